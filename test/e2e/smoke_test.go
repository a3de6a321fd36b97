package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/swell-autoscaler/swell/internal/procnode"
)

func TestDeploymentOnKwokNodesReachesRunning(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	labels := map[string]string{"app": "smoke"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/smoke:1"}}},
			},
		},
	}
	if _, err := env.Clientset.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	waitFor(ctx, t, "3 Running pods on kwok nodes", func() (bool, error) {
		pods, err := env.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=smoke"})
		if err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && strings.HasPrefix(p.Spec.NodeName, "kwok-") {
				running++
			}
		}
		return running == 3, nil
	})
}

func TestProcessNodeRunsCommandToSucceeded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	pod := processPod(ns, "echo", corev1.RestartPolicyNever,
		[]string{"/bin/sh", "-c", `test "$HOSTNAME" = echo && test "$MY_NS" = "$(NS_EXPECTED)" && echo "hello from $HOSTNAME"`},
		corev1.EnvVar{Name: "MY_NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
	)
	// $(NS_EXPECTED) is expanded by the node from the env, not by the shell.
	pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, corev1.EnvVar{Name: "NS_EXPECTED", Value: ns})
	pod.Spec.Containers[0].Command[2] = strings.Replace(pod.Spec.Containers[0].Command[2], "$(NS_EXPECTED)", ns, 1)
	createPod(ctx, t, pod)
	p := waitForPhase(ctx, t, ns, "echo", corev1.PodSucceeded)
	if code := p.Status.ContainerStatuses[0].State.Terminated.ExitCode; code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	out := readLog(t, ns, "echo", "main")
	if !strings.Contains(out, "hello from echo") {
		t.Fatalf("container output %q does not contain %q", out, "hello from echo")
	}
}

func TestProcessNodeReportsFailedExitCode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	createPod(ctx, t, processPod(ns, "fail", corev1.RestartPolicyNever, []string{"/bin/sh", "-c", "exit 3"}))
	p := waitForPhase(ctx, t, ns, "fail", corev1.PodFailed)
	if code := p.Status.ContainerStatuses[0].State.Terminated.ExitCode; code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
}

func TestProcessNodeDeletionDeliversSIGTERM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	script := `trap 'echo got-sigterm; exit 0' TERM; echo started; while true; do sleep 0.1; done`
	pod := processPod(ns, "sleeper", corev1.RestartPolicyAlways, []string{"/bin/sh", "-c", script})
	pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](10)
	createPod(ctx, t, pod)
	waitForPhase(ctx, t, ns, "sleeper", corev1.PodRunning)
	waitFor(ctx, t, "the process to start", func() (bool, error) {
		return strings.Contains(readLog(t, ns, "sleeper", "main"), "started"), nil
	})
	if err := env.Clientset.CoreV1().Pods(ns).Delete(ctx, "sleeper", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete pod: %v", err)
	}
	waitFor(ctx, t, "the pod object to be removed", func() (bool, error) {
		_, err := env.Clientset.CoreV1().Pods(ns).Get(ctx, "sleeper", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if out := readLog(t, ns, "sleeper", "main"); !strings.Contains(out, "got-sigterm") {
		t.Fatalf("container output %q: the process did not see SIGTERM", out)
	}
}

func TestProcessNodeKillsAfterGracePeriod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	script := `trap 'echo ignoring-sigterm' TERM; echo started; while true; do sleep 0.1; done`
	pod := processPod(ns, "stubborn", corev1.RestartPolicyAlways, []string{"/bin/sh", "-c", script})
	pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](1)
	createPod(ctx, t, pod)
	waitFor(ctx, t, "the process to start", func() (bool, error) {
		return strings.Contains(readLog(t, ns, "stubborn", "main"), "started"), nil
	})
	if err := env.Clientset.CoreV1().Pods(ns).Delete(ctx, "stubborn", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete pod: %v", err)
	}
	waitFor(ctx, t, "the pod object to be removed after SIGKILL", func() (bool, error) {
		_, err := env.Clientset.CoreV1().Pods(ns).Get(ctx, "stubborn", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if out := readLog(t, ns, "stubborn", "main"); !strings.Contains(out, "ignoring-sigterm") {
		t.Fatalf("container output %q: SIGTERM was not delivered before SIGKILL", out)
	}
}

// processPod builds a pod bound to the process node.
func processPod(ns, name string, restart corev1.RestartPolicy, command []string, env ...corev1.EnvVar) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy: restart,
			Tolerations:   []corev1.Toleration{{Key: procnode.Taint, Operator: corev1.TolerationOpExists}},
			NodeSelector:  map[string]string{procnode.Label: "true"},
			Containers:    []corev1.Container{{Name: "main", Image: "local", Command: command, Env: env}},
		},
	}
}

func createPod(ctx context.Context, t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if _, err := env.Clientset.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
}

func waitForPhase(ctx context.Context, t *testing.T, ns, name string, phase corev1.PodPhase) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	waitFor(ctx, t, fmt.Sprintf("pod %s to be %s", name, phase), func() (bool, error) {
		p, err := env.Clientset.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pod = p
		return p.Status.Phase == phase, nil
	})
	return pod
}

func readLog(t *testing.T, ns, pod, container string) string {
	t.Helper()
	b, err := os.ReadFile(env.ProcessNodeLogPath(ns, pod, container))
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("read container log: %v", err)
	}
	return string(b)
}

// newNamespace creates a namespace for one test and deletes it afterwards.
func newNamespace(ctx context.Context, t *testing.T) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.TrimRight(name, "-")
	_, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = env.Clientset.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	waitFor(ctx, t, "default service account in "+name, func() (bool, error) {
		_, err := env.Clientset.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	return name
}

// waitFor polls cond every 100 ms until it is true, failing the test when
// ctx ends first.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s (last error: %v)", what, lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
