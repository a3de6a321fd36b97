package e2e

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/procnode"
)

// TestLegacyQScalerWorkersOvershootAndRecover runs Python workers that
// follow QScaler's own exit rule (leave when desiredReplicas <
// currentReplicas) under Swell's controller: on a scale-down 6 → 2 they may
// all leave at once. The test counts how far they overshoot, and checks the
// controller restores the pool and never counts a leaving pod twice.
func TestLegacyQScalerWorkersOvershootAndRecover(t *testing.T) {
	ctx, c, ns, rdb, queue := redisFixture(t, 4*time.Minute)
	sdk, err := filepath.Abs("../../sdk/python")
	if err != nil {
		t.Fatal(err)
	}
	script, _ := filepath.Abs("testdata/legacy_worker.py")
	qw := &qv1.QWorker{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: ns},
		Spec: qv1.QWorkerSpec{
			PodSpec: corev1.PodSpec{
				NodeSelector:                  map[string]string{procnode.Label: "true"},
				Tolerations:                   []corev1.Toleration{{Key: procnode.Taint, Operator: corev1.TolerationOpExists}},
				TerminationGracePeriodSeconds: ptr.To[int64](5),
				Containers: []corev1.Container{{
					Name: "worker", Image: "legacy", Command: []string{"/usr/bin/python3", script},
					Env: []corev1.EnvVar{
						{Name: "PYTHONPATH", Value: sdk}, {Name: "REDIS_ADDR", Value: env.RedisAddr}, {Name: "QUEUE", Value: queue},
						{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
					},
				}},
			},
			ScaleConfig: qv1.ScaleConfig{ScalerConfigRef: "redis", Queue: queue, MinReplicas: 1, MaxReplicas: 6, ScalingFactor: 1,
				PollingIntervalSeconds: ptr.To[int32](1)},
		},
	}
	if err := c.Create(ctx, qw); err != nil {
		t.Fatal(err)
	}
	enqueue(ctx, t, rdb, queue, 100000) // a backlog that outlasts the test
	waitForRunningPods(ctx, t, ns, "legacy", 6)

	left := watchLeavers(ctx, t, ns)
	setMax(ctx, t, c, ns, "legacy", 2, nil)
	// The pool settles at 2 running pods and stays there.
	stableSince := time.Time{}
	waitFor(ctx, t, "the pool back at 2 running pods for 5 s", func() (bool, error) {
		pods, err := alivePods(ctx, ns, "legacy")
		if err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		if running != 2 || len(pods) != 2 {
			stableSince = time.Time{}
			return false, nil
		}
		if stableSince.IsZero() {
			stableSince = time.Now()
		}
		return time.Since(stableSince) > 5*time.Second, nil
	})
	gone := left.count()
	got := getQWorker(ctx, t, c, ns, "legacy")
	if got.Status.CurrentReplicas != 2 {
		t.Fatalf("status.currentReplicas = %d after the pool settled at 2 pods", got.Status.CurrentReplicas)
	}
	overshoot := gone - 4
	t.Logf("scale-down 6 → 2 with QScaler-rule workers: %d workers left (4 asked), overshoot %d, pool restored to 2", gone, overshoot)
	if gone < 4 {
		t.Fatalf("only %d workers left on a scale-down of 4", gone)
	}
}

// leavers records worker pods of a namespace that left (were deleted).
type leavers struct {
	mu   sync.Mutex
	gone map[string]bool
}

func (l *leavers) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.gone)
}

func watchLeavers(ctx context.Context, t *testing.T, ns string) *leavers {
	t.Helper()
	w, err := env.Clientset.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l := &leavers{gone: map[string]bool{}}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			if ev.Type == watch.Deleted || pod.DeletionTimestamp != nil {
				l.mu.Lock()
				l.gone[pod.Name] = true
				l.mu.Unlock()
			}
		}
	}()
	return l
}
