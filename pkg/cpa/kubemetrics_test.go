package cpa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

var (
	t0  = time.Date(2026, 4, 5, 18, 10, 10, 0, time.UTC)
	now = t0.Add(10 * time.Minute)
)

func readyPod(name, cpuRequest string, started time.Time) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpuRequest)},
		}}}},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, StartTime: &metav1.Time{Time: started},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Time{Time: started.Add(time.Second)}}},
		},
	}
}

func podUsage(name string, cpu ...string) metricsv1beta1.PodMetrics {
	pm := metricsv1beta1.PodMetrics{ObjectMeta: metav1.ObjectMeta{Name: name}, Timestamp: metav1.Time{Time: t0}, Window: metav1.Duration{Duration: 30 * time.Second}}
	for _, c := range cpu {
		pm.Containers = append(pm.Containers, metricsv1beta1.ContainerMetrics{Usage: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(c)}})
	}
	return pm
}

func TestResourceValuesMatchCPAShape(t *testing.T) {
	pending := readyPod("pending", "100m", t0)
	pending.Status.Phase = corev1.PodPending
	booting := readyPod("booting", "100m", now.Add(-time.Minute)) // inside cpuInitializationPeriod
	booting.Status.Conditions[0].LastTransitionTime = metav1.Time{Time: t0.Add(time.Hour)}
	failed := readyPod("failed", "100m", t0)
	failed.Status.Phase = corev1.PodFailed
	deleted := readyPod("deleted", "100m", t0)
	deleted.DeletionTimestamp = &metav1.Time{Time: now}
	pods := []corev1.Pod{readyPod("a", "200m", t0.Add(-time.Hour)), readyPod("b", "100m", t0.Add(-time.Hour)), readyPod("missing", "100m", t0.Add(-time.Hour)), pending, booting, failed, deleted}
	later := podUsage("b", "50m", "25m")
	later.Timestamp = metav1.Time{Time: t0.Add(time.Minute)}
	// deleted and failed pods are in no group (k8shorizmetrics
	// internal/podutil GroupPods skips them) but still have requests; the
	// block's timestamp is the first item's (metricsclient GetResourceMetric).
	raw := []metricsv1beta1.PodMetrics{podUsage("a", "4m"), later, podUsage("booting", "500m"), podUsage("deleted", "9m")}

	v, err := ResourceValues(now, pods, raw, corev1.ResourceCPU, true, 300*time.Second, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"pod_metrics_info":{"a":{"Timestamp":"2026-04-05T18:10:10Z","Window":30000000000,"Value":4},"b":{"Timestamp":"2026-04-05T18:11:10Z","Window":30000000000,"Value":75},` +
		`"deleted":{"Timestamp":"2026-04-05T18:10:10Z","Window":30000000000,"Value":9}},` +
		`"requests":{"a":200,"b":100,"booting":100,"deleted":100,"failed":100,"missing":100,"pending":100},"ready_pod_count":2,` +
		`"ignored_pods":{"booting":{},"pending":{}},"missing_pods":{"missing":{}},"total_pods":7,"timestamp":"2026-04-05T18:10:10Z"}`
	if string(b) != want {
		t.Fatalf("JSON\n got %s\nwant %s", b, want)
	}
}

func TestResourceValuesErrors(t *testing.T) {
	pods := []corev1.Pod{readyPod("a", "200m", t0)}
	pods[0].Spec.Containers[0].Resources.Requests = nil
	if _, err := ResourceValues(now, pods, []metricsv1beta1.PodMetrics{podUsage("a", "1m")}, corev1.ResourceCPU, true, 0, 0); err == nil || !strings.Contains(err.Error(), "no cpu request") {
		t.Errorf("Utilization without requests: err = %v", err)
	}
	if _, err := ResourceValues(now, nil, nil, corev1.ResourceCPU, false, 0, 0); err == nil {
		t.Error("no pods must be an error")
	}
	if _, err := ResourceValues(now, pods, nil, corev1.ResourceCPU, false, 0, 0); err == nil {
		t.Error("no metrics must be an error")
	}
	// Items without the resource are not an error in CPA: the pods are missing.
	v, err := ResourceValues(now, pods, []metricsv1beta1.PodMetrics{podUsage("a")}, corev1.ResourceCPU, false, 0, 0)
	if err != nil || len(v.PodMetricsInfo) != 0 || len(v.MissingPods) != 1 || v.ReadyPodCount != 0 {
		t.Errorf("metrics without cpu: %+v, %v; want no error, the pod missing", v, err)
	}
}

// fixedMetrics is a MetricsAPI with canned answers.
type fixedMetrics struct {
	pods     []metricsv1beta1.PodMetrics
	custom   []cmv1beta2.MetricValue
	object   *cmv1beta2.MetricValue
	external []emv1beta1.ExternalMetricValue
	err      error
	asked    []string
}

func (f *fixedMetrics) PodMetrics(_ context.Context, ns string, sel labels.Selector) ([]metricsv1beta1.PodMetrics, error) {
	f.asked = append(f.asked, "resource "+ns+" "+sel.String())
	return f.pods, f.err
}

func (f *fixedMetrics) PodCustomMetrics(_ context.Context, _ string, _ labels.Selector, metric string, _ labels.Selector) ([]cmv1beta2.MetricValue, error) {
	f.asked = append(f.asked, "pods "+metric)
	return f.custom, f.err
}

func (f *fixedMetrics) ObjectMetric(_ context.Context, _ string, gk schema.GroupKind, name, metric string, _ labels.Selector) (*cmv1beta2.MetricValue, error) {
	f.asked = append(f.asked, "object "+gk.String()+" "+name+" "+metric)
	return f.object, f.err
}

func (f *fixedMetrics) ExternalMetrics(_ context.Context, _, metric string, sel labels.Selector) ([]emv1beta1.ExternalMetricValue, error) {
	f.asked = append(f.asked, "external "+metric+" "+sel.String())
	return f.external, f.err
}

func allSpecs() []autoscalingv2.MetricSpec {
	return []autoscalingv2.MetricSpec{
		{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType}}},
		{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "packets"}, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType},
		}},
		{Type: autoscalingv2.ObjectMetricSourceType, Object: &autoscalingv2.ObjectMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "rps"}, DescribedObject: autoscalingv2.CrossVersionObjectReference{APIVersion: "networking.k8s.io/v1", Kind: "Ingress", Name: "main"},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType},
		}},
		{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "queue", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"queue": "tasks"}}},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType},
		}},
	}
}

func TestGatherAllFourTypes(t *testing.T) {
	api := &fixedMetrics{
		pods:     []metricsv1beta1.PodMetrics{podUsage("a", "10m")},
		custom:   []cmv1beta2.MetricValue{{DescribedObject: corev1.ObjectReference{Name: "a"}, Value: resource.MustParse("7")}},
		object:   &cmv1beta2.MetricValue{Value: resource.MustParse("9")},
		external: []emv1beta1.ExternalMetricValue{{Value: resource.MustParse("11")}},
	}
	k := &KubeMetrics{API: api}
	scope := Scope{Namespace: "ns", Selector: labels.SelectorFromSet(labels.Set{"app": "web"}), Pods: []corev1.Pod{readyPod("a", "1", t0)}, CurrentReplicas: 1}
	got, err := k.Gather(context.Background(), now, allSpecs(), scope)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].Resource == nil || got[1].Pods == nil || got[2].Object == nil || got[3].External == nil {
		t.Fatalf("got %+v", got)
	}
	if *got[2].Object.Current.Value != 9000 || *got[3].External.Current.Value != 11000 || got[0].CurrentReplicas != 1 {
		t.Errorf("values: object %d external %d", *got[2].Object.Current.Value, *got[3].External.Current.Value)
	}
	want := []string{"resource ns app=web", "pods packets", "object Ingress.networking.k8s.io main rps", "external queue queue=tasks"}
	if strings.Join(api.asked, "|") != strings.Join(want, "|") {
		t.Errorf("asked %q, want %q", api.asked, want)
	}
	b, _ := json.Marshal(got[0])
	if !strings.Contains(string(b), `"current_replicas":1,"spec":{"type":"Resource"`) {
		t.Errorf("metric JSON %s lacks current_replicas/spec", b)
	}
}

func TestRequireKubernetesMetrics(t *testing.T) {
	for _, require := range []bool{true, false} {
		r := newRig(t, func(cfg *Config) {
			cfg.KubernetesMetricSpecs = allSpecs()[:1]
			cfg.RequireKubernetesMetrics = require
		})
		r.a.kube = &KubeMetrics{API: &fixedMetrics{err: errBoom}}
		r.runner.set("evaluate", answer(targetJSON(5)))
		err := r.a.Tick(context.Background())
		if require {
			if err == nil || r.target.current() != 2 || !hasEvent(r.events(), "Warning "+ReasonFailedKubernetesMetrics) {
				t.Fatalf("required and unavailable: err %v, replicas %d; want an error, held replicas and an event", err, r.target.current())
			}
			continue
		}
		if err != nil || r.target.current() != 5 {
			t.Fatalf("not required: err %v replicas %d, want the pass to go on without them", err, r.target.current())
		}
		if _, ok := r.runner.input(t, "metric", 0)["kubernetesMetrics"]; ok {
			t.Error("kubernetesMetrics must be absent when they could not be read")
		}
	}
}

func TestKubernetesMetricsReachMetricInput(t *testing.T) {
	r := newRig(t, func(cfg *Config) { cfg.KubernetesMetricSpecs = allSpecs()[:1] })
	r.a.kube = &KubeMetrics{API: &fixedMetrics{pods: []metricsv1beta1.PodMetrics{podUsage("web-a", "10m"), podUsage("web-b", "30m")}}}
	r.runner.set("evaluate", answer(targetJSON(2)))
	if err := r.a.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	km := r.runner.input(t, "metric", 0)["kubernetesMetrics"].([]any)[0].(map[string]any)
	info := km["resource"].(map[string]any)["pod_metrics_info"].(map[string]any)
	if info["web-b"].(map[string]any)["Value"] != float64(30) || km["current_replicas"] != float64(2) {
		t.Fatalf("kubernetesMetrics = %v", km)
	}
}

// failingMetrics is fixedMetrics with a failure per metrics API call kind
// ("resource", "pods", "object", "external").
type failingMetrics struct {
	fixedMetrics
	fail map[string]bool
}

func (f *failingMetrics) errFor(kind string) error {
	if f.fail[kind] {
		return fmt.Errorf("%s metrics API: %w", kind, errBoom)
	}
	return nil
}

func (f *failingMetrics) PodMetrics(ctx context.Context, ns string, sel labels.Selector) ([]metricsv1beta1.PodMetrics, error) {
	v, _ := f.fixedMetrics.PodMetrics(ctx, ns, sel)
	return v, f.errFor("resource")
}

func (f *failingMetrics) PodCustomMetrics(ctx context.Context, ns string, sel labels.Selector, metric string, msel labels.Selector) ([]cmv1beta2.MetricValue, error) {
	v, _ := f.fixedMetrics.PodCustomMetrics(ctx, ns, sel, metric, msel)
	return v, f.errFor("pods")
}

func (f *failingMetrics) ObjectMetric(ctx context.Context, ns string, gk schema.GroupKind, name, metric string, msel labels.Selector) (*cmv1beta2.MetricValue, error) {
	v, _ := f.fixedMetrics.ObjectMetric(ctx, ns, gk, name, metric, msel)
	return v, f.errFor("object")
}

func (f *failingMetrics) ExternalMetrics(ctx context.Context, ns, metric string, sel labels.Selector) ([]emv1beta1.ExternalMetricValue, error) {
	v, _ := f.fixedMetrics.ExternalMetrics(ctx, ns, metric, sel)
	return v, f.errFor("external")
}

// TestPartialKubernetesMetrics pins CPA's rule for several specs of which
// some fail: with requireKubernetesMetrics false user logic gets the ones
// that were read, in spec order; with it true the pass fails and holds.
func TestPartialKubernetesMetrics(t *testing.T) {
	cases := []struct {
		name     string
		fail     []string
		require  bool
		wantKeys []string // the value block of each kubernetesMetrics entry; nil: key absent
		wantErr  string
	}{
		{"none fail", nil, false, []string{"resource", "pods", "object", "external"}, ""},
		{"pods fails", []string{"pods"}, false, []string{"resource", "object", "external"}, ""},
		{"first and last fail", []string{"resource", "external"}, false, []string{"pods", "object"}, ""},
		{"all fail", []string{"resource", "pods", "object", "external"}, false, nil, ""},
		{"pods fails, required", []string{"pods"}, true, nil, "1 of 4 Kubernetes metrics failed"},
		{"all fail, required", []string{"resource", "pods", "object", "external"}, true, nil, "4 of 4 Kubernetes metrics failed"},
		{"none fail, required", nil, true, []string{"resource", "pods", "object", "external"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, func(cfg *Config) {
				cfg.KubernetesMetricSpecs = allSpecs()
				cfg.RequireKubernetesMetrics = c.require
				cfg.RunMode = PerPod
			})
			fail := map[string]bool{}
			for _, k := range c.fail {
				fail[k] = true
			}
			r.a.kube = &KubeMetrics{API: &failingMetrics{fail: fail, fixedMetrics: fixedMetrics{
				pods:     []metricsv1beta1.PodMetrics{podUsage("web-a", "10m"), podUsage("web-b", "30m")},
				custom:   []cmv1beta2.MetricValue{{DescribedObject: corev1.ObjectReference{Name: "web-a"}, Value: resource.MustParse("7")}},
				object:   &cmv1beta2.MetricValue{Value: resource.MustParse("9")},
				external: []emv1beta1.ExternalMetricValue{{Value: resource.MustParse("11")}},
			}}}
			r.runner.set("evaluate", answer(targetJSON(5)))
			err := r.a.Tick(context.Background())
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || r.target.current() != 2 || !hasEvent(r.events(), "Warning "+ReasonFailedKubernetesMetrics) {
					t.Fatalf("err %v, replicas %d; want %q, replicas held at 2 and a %s event", err, r.target.current(), c.wantErr, ReasonFailedKubernetesMetrics)
				}
				return
			}
			if err != nil || r.target.current() != 5 {
				t.Fatalf("err %v, replicas %d; want the pass to scale to 5", err, r.target.current())
			}
			for i := range 2 { // per-pod: both pods' metric runs get the same list
				raw, ok := r.runner.input(t, "metric", i)["kubernetesMetrics"]
				if c.wantKeys == nil {
					if ok {
						t.Fatalf("kubernetesMetrics = %v, want the key absent when none was read", raw)
					}
					continue
				}
				var got []string
				for _, m := range raw.([]any) {
					for _, k := range []string{"resource", "pods", "object", "external"} {
						if _, ok := m.(map[string]any)[k]; ok {
							got = append(got, k)
						}
					}
				}
				if strings.Join(got, ",") != strings.Join(c.wantKeys, ",") {
					t.Fatalf("metric run %d got kubernetesMetrics %v, want %v", i, got, c.wantKeys)
				}
			}
		})
	}
}

func TestGatherReturnsWhatWasRead(t *testing.T) {
	k := &KubeMetrics{API: &failingMetrics{fail: map[string]bool{"pods": true}, fixedMetrics: fixedMetrics{
		pods:     []metricsv1beta1.PodMetrics{podUsage("a", "10m")},
		object:   &cmv1beta2.MetricValue{Value: resource.MustParse("9")},
		external: []emv1beta1.ExternalMetricValue{{Value: resource.MustParse("11")}},
	}}}
	scope := Scope{Namespace: "ns", Selector: labels.Everything(), Pods: []corev1.Pod{readyPod("a", "1", t0)}, CurrentReplicas: 1}
	got, err := k.Gather(context.Background(), now, allSpecs(), scope)
	var ge *GatherError
	if !errors.As(err, &ge) || !ge.Partial() || ge.Failed != 1 || ge.Total != 4 || !errors.Is(err, errBoom) {
		t.Fatalf("err = %v, want a partial *GatherError (1 of 4) wrapping the API error", err)
	}
	if !strings.Contains(err.Error(), "kubernetesMetricSpecs[1] (Pods)") {
		t.Errorf("err = %v, want it to name kubernetesMetricSpecs[1] (Pods)", err)
	}
	if len(got) != 3 || got[0].Resource == nil || got[1].Object == nil || got[2].External == nil || got[2].Spec.Type != autoscalingv2.ExternalMetricSourceType {
		t.Fatalf("got %+v, want resource, object, external in spec order", got)
	}
}
