package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/swell-autoscaler/swell/internal/procnode"
)

// TestCPAReceivesRealResourceMetrics runs a Deployment of busy processes on
// the process node, where metrics-server measures them, and a CPA config
// asking for a cpu Resource metric: the user's metric script must receive
// the real metrics.k8s.io values in CPA's JSON (current_replicas,
// pod_metrics_info with per-pod Value, ready_pod_count).
func TestCPAReceivesRealResourceMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	dir := exampleStateDir(t)
	labels := map[string]string{"app": "busy"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "busy", Namespace: ns, Annotations: map[string]string{cpaAnnotation: "2"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{procnode.Label: "true"},
					Tolerations:  []corev1.Toleration{{Key: procnode.Taint, Operator: corev1.TolerationOpExists}},
					Containers: []corev1.Container{{
						Name: "burn", Image: "local", Command: []string{"/bin/sh", "-c", "while :; do :; done"},
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}},
					}},
				},
			},
		},
	}
	if _, err := env.Clientset.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitReadyReplicas(ctx, t, ns, "busy", 2)
	startCPA(t, loadCPAExample(t, "shell-per-resource", ns, "busy", map[string]string{
		"kubernetesMetricSpecs":    `[{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]`,
		"requireKubernetesMetrics": "true",
		"interval":                 "1000",
	}))
	// metrics-server needs two scrapes (~20 s) before it reports pods.
	var km []map[string]any
	waitFor(ctx, t, "the metric hook to receive real resource metrics of both pods", func() (bool, error) {
		b, err := os.ReadFile(filepath.Join(dir, "preMetric.json"))
		if err != nil {
			return false, nil
		}
		var in map[string]any
		if json.Unmarshal(b, &in) != nil {
			return false, nil
		}
		raw, _ := json.Marshal(in["kubernetesMetrics"])
		if json.Unmarshal(raw, &km) != nil || len(km) == 0 {
			return false, nil
		}
		return strings.Count(string(raw), `"Value"`) >= 2, nil
	})
	raw, _ := json.Marshal(km[0])
	for _, want := range []string{`"current_replicas":2`, `"pod_metrics_info"`, `"ready_pod_count":2`, `"Timestamp"`, `"Window"`} {
		if !strings.Contains(string(raw), want) {
			t.Fatalf("kubernetesMetrics %s lacks %s", raw, want)
		}
	}
	var parsed struct {
		Resource struct {
			PodMetricsInfo map[string]struct{ Value float64 } `json:"pod_metrics_info"`
		} `json:"resource"`
	}
	if err := json.Unmarshal(raw, &parsed); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	for pod, m := range parsed.Resource.PodMetricsInfo {
		if m.Value <= 0 {
			t.Fatalf("pod %s reports cpu %v; a busy loop must use cpu (metrics: %s)", pod, m.Value, raw)
		}
	}
}
