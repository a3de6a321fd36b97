package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/swell-autoscaler/swell/internal/procnode"
)

// TestMetricsServerReportsProcessPods runs a CPU-burning pod and an idle pod
// on the process node and reads both through the real metrics.k8s.io API
// (kube-apiserver aggregation → metrics-server → the process node's
// /metrics/resource): the busy pod uses more CPU than the idle one, both use
// memory, and nothing is left running after Stop.
func TestMetricsServerReportsProcessPods(t *testing.T) {
	if err := CheckBinaries(); err != nil {
		t.Fatal(err)
	}
	if _, err := nonLoopbackIPv4(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e, err := Start(ctx, Options{ControllerManager: true, ProcessNode: &NodeSpec{Name: "process-node"}, MetricsServer: true})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			e.Stop()
		}
		if t.Failed() {
			t.Logf("logs in %s:\n%s", e.Dir, e.LogTails(3000))
		}
	}()
	t.Logf("metrics-server ready in %v (control plane %v)", e.Timings["metrics-server"], e.Timings["control-plane"])

	for name, cmd := range map[string][]string{
		"busy": {"sh", "-c", "while :; do :; done"},
		"idle": {"sleep", "600"},
	} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: corev1.PodSpec{
				NodeName:    e.ProcessNodeName,
				Tolerations: []corev1.Toleration{{Key: procnode.Taint, Operator: corev1.TolerationOpExists}},
				Containers:  []corev1.Container{{Name: "main", Image: "local", Command: cmd}},
			},
		}
		if _, err := e.Clientset.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	mc, err := metricsclient.NewForConfig(e.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]metricsv1beta1.PodMetrics{}
	start := time.Now()
	err = pollUntil(ctx, func(ctx context.Context) error {
		list, err := mc.MetricsV1beta1().PodMetricses("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, pm := range list.Items {
			if len(pm.Containers) > 0 {
				got[pm.Name] = pm
			}
		}
		if _, ok := got["busy"]; !ok {
			return fmt.Errorf("no metrics for pod busy yet (have %d)", len(list.Items))
		}
		if _, ok := got["idle"]; !ok {
			return fmt.Errorf("no metrics for pod idle yet (have %d)", len(list.Items))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("PodMetrics: %v", err)
	}
	t.Logf("PodMetrics for both pods after %v", time.Since(start).Round(time.Millisecond))
	busy, idle := got["busy"].Containers[0].Usage, got["idle"].Containers[0].Usage
	t.Logf("busy: cpu %s memory %s; idle: cpu %s memory %s", busy.Cpu(), busy.Memory(), idle.Cpu(), idle.Memory())
	if busy.Cpu().Cmp(*idle.Cpu()) <= 0 {
		t.Errorf("busy pod CPU %s is not above idle pod CPU %s", busy.Cpu(), idle.Cpu())
	}
	for name, u := range map[string]corev1.ResourceList{"busy": busy, "idle": idle} {
		if u.Memory().IsZero() {
			t.Errorf("pod %s reports zero memory", name)
		}
	}
	if nm, err := mc.MetricsV1beta1().NodeMetricses().Get(ctx, e.ProcessNodeName, metav1.GetOptions{}); err != nil {
		t.Errorf("NodeMetrics of %s: %v", e.ProcessNodeName, err)
	} else if nm.Usage.Cpu().IsZero() || nm.Usage.Memory().IsZero() {
		t.Errorf("NodeMetrics of %s: zero usage %v", e.ProcessNodeName, nm.Usage)
	}

	e.Stop()
	stopped = true
	if left := processesUnder(e.Dir); len(left) > 0 {
		t.Errorf("processes left after Stop: %s", strings.Join(left, "; "))
	}
}
