package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// ConditionTakingTasks is the pod condition a worker sets True once its
// queue consumer is connected and it is about to take its first task. A
// QWorker whose podSpec lists it in readinessGates gets pods that turn
// Ready only then, so a rollout retires an outdated worker only once its
// replacement takes tasks, not when its process starts.
const ConditionTakingTasks = "swell.dev/taking-tasks"

// reasonQueueConnected is the reason the worker gives on its condition.
const reasonQueueConnected = "QueueConnected"

// hasGate reports whether pod's spec lists the readiness gate t.
func hasGate(pod *corev1.Pod, t corev1.PodConditionType) bool {
	if pod == nil {
		return false
	}
	for _, g := range pod.Spec.ReadinessGates {
		if g.ConditionType == t {
			return true
		}
	}
	return false
}

// conditionTrue reports whether pod's condition t is True.
func conditionTrue(pod *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// takingTasksPatch is the strategic-merge patch of the pod status that sets
// ConditionTakingTasks True (conditions merge by type).
func takingTasksPatch(now time.Time) ([]byte, error) {
	cond := corev1.PodCondition{
		Type:               ConditionTakingTasks,
		Status:             corev1.ConditionTrue,
		LastTransitionTime: metav1.NewTime(now),
		Reason:             reasonQueueConnected,
		Message:            "the worker's queue consumer is connected; it takes tasks",
	}
	return json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{cond}}})
}

// markTakingTasks sets ConditionTakingTasks True on pod when its spec has
// that readiness gate and the condition is not True yet: one write per pod
// start. It returns whether it wrote, and an error naming the missing
// permission when the API refuses the patch.
func markTakingTasks(ctx context.Context, kube kubernetes.Interface, pod *corev1.Pod, now time.Time) (bool, error) {
	if !hasGate(pod, ConditionTakingTasks) || conditionTrue(pod, ConditionTakingTasks) {
		return false, nil
	}
	patch, err := takingTasksPatch(now)
	if err != nil {
		return false, fmt.Errorf("readiness gate %s: %w", ConditionTakingTasks, err)
	}
	_, err = kube.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	switch {
	case apierrors.IsForbidden(err):
		return false, fmt.Errorf("the worker's ServiceAccount may not patch pods/status in namespace %s, so pod %s never turns Ready (its readiness gate %s stays unset): grant it with the worker Role (docs/qworker.md, config/rbac/qworker-worker): %w",
			pod.Namespace, pod.Name, ConditionTakingTasks, err)
	case err != nil:
		return false, fmt.Errorf("set readiness gate %s on pod %s: %w", ConditionTakingTasks, pod.Name, err)
	}
	return true, nil
}
