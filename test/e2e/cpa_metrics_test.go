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
	"k8s.io/apimachinery/pkg/runtime/schema"
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

// TestCPAScalesOnPodsObjectAndExternalMetrics: the test metrics adapter
// (custom.metrics.k8s.io and external.metrics.k8s.io behind the real
// apiserver's aggregation layer) serves a Pods, an Object and an External
// metric, and `swell cpa` runs examples/cpa/kubernetes-metrics. The metric
// script must receive the values in CPA's JSON (milli units, per-pod
// Timestamp/Window/Value, only the External series the selector matches),
// and each metric in turn must drive the replica count.
func TestCPAScalesOnPodsObjectAndExternalMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	dir := exampleStateDir(t)
	m := env.CustomMetrics
	deployments := schema.GroupResource{Group: "apps", Resource: "deployments"}
	orders, other := map[string]string{"queue": "orders"}, map[string]string{"queue": "other"}
	m.SetPodsMetric(ns, "inflight_per_pod", resource.MustParse("2"))
	m.SetObjectMetric(deployments, ns, "example", "queue_depth", resource.MustParse("40"))
	m.SetExternalMetric(ns, "backlog", orders, resource.MustParse("30"))
	m.SetExternalMetric(ns, "backlog", other, resource.MustParse("999")) // the selector must leave it out
	createCPADeployment(ctx, t, ns, "example", 2, "")
	waitReadyReplicas(ctx, t, ns, "example", 2)
	startCPA(t, loadCPAExample(t, "kubernetes-metrics", ns, "example", map[string]string{"interval": "500"}))

	// External 30 → 3 replicas (object 40 → 2, pods 2 → 2).
	waitReplicas(ctx, t, ns, "example", 3)
	in := readMetricInput(ctx, t, dir)
	assertCPAKubernetesMetrics(t, in)

	// Each step raises the next metric before lowering the previous one,
	// so no pass in between sees a smaller count.
	m.SetObjectMetric(deployments, ns, "example", "queue_depth", resource.MustParse("100"))
	m.SetExternalMetric(ns, "backlog", orders, resource.MustParse("0"))
	waitReplicas(ctx, t, ns, "example", 5) // object 100 / 20
	m.SetPodsMetric(ns, "inflight_per_pod", resource.MustParse("7"))
	m.SetObjectMetric(deployments, ns, "example", "queue_depth", resource.MustParse("0"))
	waitReplicas(ctx, t, ns, "example", 7) // pods average 7
	m.SetPodsMetric(ns, "inflight_per_pod", resource.MustParse("500m"))
	waitReplicas(ctx, t, ns, "example", 1) // ceil(0.5), and minReplicas 1
}

// cpaMetricInput is the part of CPA's metric input this suite checks.
type cpaMetricInput struct {
	KubernetesMetrics []struct {
		CurrentReplicas int32 `json:"current_replicas"`
		Spec            struct {
			Type string `json:"type"`
		} `json:"spec"`
		Pods *struct {
			PodMetricsInfo map[string]struct {
				Timestamp time.Time
				Window    time.Duration
				Value     int64
			} `json:"pod_metrics_info"`
			ReadyPodCount int64 `json:"ready_pod_count"`
		} `json:"pods"`
		Object   *cpaValueMetric `json:"object"`
		External *cpaValueMetric `json:"external"`
	} `json:"kubernetesMetrics"`
}

type cpaValueMetric struct {
	Current struct {
		Value *int64 `json:"value"`
	} `json:"current"`
	ReadyPodCount *int64 `json:"ready_pod_count"`
}

// readMetricInput waits for the example's metric script to have saved an
// input with all three metrics from two pods.
func readMetricInput(ctx context.Context, t *testing.T, dir string) cpaMetricInput {
	t.Helper()
	var in cpaMetricInput
	waitFor(ctx, t, "the metric script to receive Pods, Object and External metrics", func() (bool, error) {
		b, err := os.ReadFile(filepath.Join(dir, "metric.json"))
		if err != nil {
			return false, nil
		}
		in = cpaMetricInput{}
		if json.Unmarshal(b, &in) != nil || len(in.KubernetesMetrics) != 3 {
			return false, nil
		}
		p := in.KubernetesMetrics[0].Pods
		return p != nil && len(p.PodMetricsInfo) == 2 && in.KubernetesMetrics[0].CurrentReplicas == 2, nil
	})
	return in
}

// assertCPAKubernetesMetrics checks the values the adapter was given, in
// CPA's units: milli values, the adapter's 30 s window per pod.
func assertCPAKubernetesMetrics(t *testing.T, in cpaMetricInput) {
	t.Helper()
	km := in.KubernetesMetrics
	if km[0].Spec.Type != "Pods" || km[1].Spec.Type != "Object" || km[2].Spec.Type != "External" {
		t.Fatalf("spec types %s, %s, %s; want Pods, Object, External in config order", km[0].Spec.Type, km[1].Spec.Type, km[2].Spec.Type)
	}
	for pod, v := range km[0].Pods.PodMetricsInfo {
		if v.Value != 2000 || v.Window != 30*time.Second || v.Timestamp.IsZero() {
			t.Errorf("pod %s: %+v, want Value 2000 (milli), Window 30s, a Timestamp", pod, v)
		}
	}
	if km[0].Pods.ReadyPodCount != 2 {
		t.Errorf("pods ready_pod_count = %d, want 2", km[0].Pods.ReadyPodCount)
	}
	if o := km[1].Object; o == nil || o.Current.Value == nil || *o.Current.Value != 40000 {
		t.Errorf("object = %+v, want current.value 40000 (milli)", o)
	}
	if x := km[2].External; x == nil || x.Current.Value == nil || *x.Current.Value != 30000 {
		t.Errorf("external = %+v, want current.value 30000: the queue=orders series only", x)
	}
}
