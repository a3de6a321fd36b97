package cpa

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// The expected values in this file follow CPA v2.11+ (jthomperoo/custom-pod-autoscaler,
// which gathers kubernetesMetricSpecs with jthomperoo/k8shorizmetrics/v3), read in:
//
//   - k8shorizmetrics gather.go, GatherSingleMetric: External and Object take
//     only Value (Gather) or AverageValue (GatherPerPod) targets, Pods only
//     AverageValue, Resource only AverageValue or Utilization; any other
//     target type fails that metric.
//   - k8shorizmetrics internal/external/gather.go, Gather and GatherPerPod:
//     both add up the series; Value puts the sum in current.value and sets
//     ready_pod_count; AverageValue puts the same sum, not divided by any
//     replica count, in current.average_value and leaves ready_pod_count out.
//     internal/object/gather.go does the same with the object's one value.
//   - k8shorizmetrics internal/external/evaluate.go, Evaluate: the division by
//     current replicas happens at evaluation, as in kubernetes/kubernetes
//     pkg/controller/podautoscaler/replica_calculator.go,
//     GetExternalPerPodMetricReplicas (whose per-pod figure is only the HPA's
//     status, never a gathered value).
//   - k8shorizmetrics metricsclient/metricsclient.go, GetExternalMetric and
//     GetRawMetric: milli-values, the first item's timestamp, no items is an
//     error.
//   - k8shorizmetrics internal/podutil/podutil.go, GetReadyPodsCount (Running
//     with Ready=True, nothing else checked) and GroupPods (deleted and
//     failed pods in no group, pending pods ignored, pods without a value
//     missing).
//   - k8shorizmetrics internal/pods/gather.go, Gather: every returned value
//     kept, ignored pods nil, an empty block when no pods match.
//   - JSON keys: k8shorizmetrics v3.0.0 metrics/external, metrics/object,
//     metrics/pods and metrics/value (ready_pod_count, average_value, ...).

func series(ts time.Time, value string) emv1beta1.ExternalMetricValue {
	return emv1beta1.ExternalMetricValue{MetricName: "queue", Timestamp: metav1.Time{Time: ts}, Value: resource.MustParse(value)}
}

func marshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExternalValueMatchesCPA(t *testing.T) {
	two := []emv1beta1.ExternalMetricValue{series(t0, "3"), series(t0.Add(time.Minute), "2")}
	for _, tc := range []struct {
		name    string
		raw     []emv1beta1.ExternalMetricValue
		target  autoscalingv2.MetricTargetType
		ready   int64
		want    string
		wantErr string
	}{
		{
			name: "AverageValue: the undivided sum, no ready_pod_count, first series' timestamp",
			raw:  two, target: autoscalingv2.AverageValueMetricType, ready: 4,
			want: `{"current":{"average_value":5000},"timestamp":"2026-04-05T18:10:10Z"}`,
		},
		{
			name: "Value: the sum with ready_pod_count",
			raw:  two, target: autoscalingv2.ValueMetricType, ready: 4,
			want: `{"current":{"value":5000},"ready_pod_count":4,"timestamp":"2026-04-05T18:10:10Z"}`,
		},
		{
			name: "Value: ready_pod_count 0 is still written",
			raw:  two[:1], target: autoscalingv2.ValueMetricType, ready: 0,
			want: `{"current":{"value":3000},"ready_pod_count":0,"timestamp":"2026-04-05T18:10:10Z"}`,
		},
		{
			name: "AverageValue: milli-units, fractions and SI suffixes",
			raw:  []emv1beta1.ExternalMetricValue{series(t0, "1500m"), series(t0, "250m"), series(t0, "2k")}, target: autoscalingv2.AverageValueMetricType, ready: 3,
			want: `{"current":{"average_value":2001750},"timestamp":"2026-04-05T18:10:10Z"}`,
		},
		{name: "no series", raw: nil, target: autoscalingv2.ValueMetricType, wantErr: "no series"},
		{name: "Utilization target", raw: two, target: autoscalingv2.UtilizationMetricType, wantErr: `target.type "Utilization": want Value or AverageValue`},
		{name: "no target type", raw: two, target: "", wantErr: `target.type "": want Value or AverageValue`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ExternalValue(tc.raw, tc.target, tc.ready)
			checkJSON(t, got, err, tc.want, tc.wantErr)
		})
	}
}

func TestObjectValueMatchesCPA(t *testing.T) {
	v := cmv1beta2.MetricValue{Timestamp: metav1.Time{Time: t0}, Value: resource.MustParse("7500m")}
	for _, tc := range []struct {
		name    string
		target  autoscalingv2.MetricTargetType
		want    string
		wantErr string
	}{
		{name: "Value", target: autoscalingv2.ValueMetricType, want: `{"current":{"value":7500},"ready_pod_count":2,"timestamp":"2026-04-05T18:10:10Z"}`},
		{name: "AverageValue: the object's value as is, no ready_pod_count", target: autoscalingv2.AverageValueMetricType, want: `{"current":{"average_value":7500},"timestamp":"2026-04-05T18:10:10Z"}`},
		{name: "Utilization target", target: autoscalingv2.UtilizationMetricType, wantErr: "want Value or AverageValue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ObjectValue(v, tc.target, 2)
			checkJSON(t, got, err, tc.want, tc.wantErr)
		})
	}
}

func podValue(pod, value string, ts time.Time) cmv1beta2.MetricValue {
	return cmv1beta2.MetricValue{DescribedObject: corev1.ObjectReference{Kind: "Pod", Name: pod}, Timestamp: metav1.Time{Time: ts}, Value: resource.MustParse(value)}
}

func TestPodsValuesMatchCPA(t *testing.T) {
	pending := readyPod("pending", "1", t0)
	pending.Status.Phase = corev1.PodPending
	failed := readyPod("failed", "1", t0)
	failed.Status.Phase = corev1.PodFailed
	deleted := readyPod("deleted", "1", t0)
	deleted.DeletionTimestamp = &metav1.Time{Time: now}
	window := int64(30)
	windowed := podValue("b", "2", t0.Add(time.Minute))
	windowed.WindowSeconds = &window
	for _, tc := range []struct {
		name    string
		pods    []corev1.Pod
		raw     []cmv1beta2.MetricValue
		want    string
		wantErr string
	}{
		{
			name: "missing pod, default 1m window, first value's timestamp",
			pods: []corev1.Pod{readyPod("a", "1", t0), readyPod("b", "1", t0)},
			raw:  []cmv1beta2.MetricValue{podValue("a", "1k", t0)},
			want: `{"pod_metrics_info":{"a":{"Timestamp":"2026-04-05T18:10:10Z","Window":60000000000,"Value":1000000}},` +
				`"ready_pod_count":1,"ignored_pods":null,"missing_pods":{"b":{}},"total_pods":2,"timestamp":"2026-04-05T18:10:10Z"}`,
		},
		{
			name: "pending, failed and deleted pods: values kept, not ready, ignored_pods null",
			pods: []corev1.Pod{readyPod("a", "1", t0), pending, failed, deleted},
			raw:  []cmv1beta2.MetricValue{podValue("pending", "5", t0), podValue("a", "1", t0), podValue("deleted", "3", t0)},
			want: `{"pod_metrics_info":{"a":{"Timestamp":"2026-04-05T18:10:10Z","Window":60000000000,"Value":1000},` +
				`"deleted":{"Timestamp":"2026-04-05T18:10:10Z","Window":60000000000,"Value":3000},` +
				`"pending":{"Timestamp":"2026-04-05T18:10:10Z","Window":60000000000,"Value":5000}},` +
				`"ready_pod_count":1,"ignored_pods":null,"missing_pods":{},"total_pods":4,"timestamp":"2026-04-05T18:10:10Z"}`,
		},
		{
			name: "windowSeconds is used, timestamp is the first value's not the newest",
			pods: []corev1.Pod{readyPod("a", "1", t0), readyPod("b", "1", t0)},
			raw:  []cmv1beta2.MetricValue{podValue("a", "1", t0), windowed},
			want: `{"pod_metrics_info":{"a":{"Timestamp":"2026-04-05T18:10:10Z","Window":60000000000,"Value":1000},` +
				`"b":{"Timestamp":"2026-04-05T18:11:10Z","Window":30000000000,"Value":2000}},` +
				`"ready_pod_count":2,"ignored_pods":null,"missing_pods":{},"total_pods":2,"timestamp":"2026-04-05T18:10:10Z"}`,
		},
		{
			name: "no pods: an empty block, not an error",
			pods: nil,
			raw:  []cmv1beta2.MetricValue{podValue("gone", "1", t0)},
			want: `{"pod_metrics_info":null,"ready_pod_count":0,"ignored_pods":null,"missing_pods":null,"total_pods":0,"timestamp":"2026-04-05T18:10:10Z"}`,
		},
		{name: "no values", pods: []corev1.Pod{readyPod("a", "1", t0)}, raw: nil, wantErr: "no values"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PodsValues(tc.pods, tc.raw)
			checkJSON(t, got, err, tc.want, tc.wantErr)
		})
	}
}

func TestReadyPodsMatchesCPA(t *testing.T) {
	notReady := readyPod("not-ready", "1", t0)
	notReady.Status.Conditions[0].Status = corev1.ConditionFalse
	noCondition := readyPod("no-condition", "1", t0)
	noCondition.Status.Conditions = nil
	pendingReady := readyPod("pending", "1", t0)
	pendingReady.Status.Phase = corev1.PodPending
	terminating := readyPod("terminating", "1", t0)
	terminating.DeletionTimestamp = &metav1.Time{Time: now}
	for _, tc := range []struct {
		name string
		pods []corev1.Pod
		want int64
	}{
		{"none", nil, 0},
		{"running and ready", []corev1.Pod{readyPod("a", "1", t0), readyPod("b", "1", t0)}, 2},
		{"not ready, no condition, pending", []corev1.Pod{notReady, noCondition, pendingReady}, 0},
		{"a terminating pod still Running and Ready counts", []corev1.Pod{terminating, readyPod("a", "1", t0)}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ReadyPods(tc.pods); got != tc.want {
				t.Errorf("ReadyPods = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestGatherTargetTypesMatchCPA runs whole specs through Gather: the target
// type picks the block's field and an unsupported one fails the metric.
func TestGatherTargetTypesMatchCPA(t *testing.T) {
	ext := func(target autoscalingv2.MetricTargetType) autoscalingv2.MetricSpec {
		return autoscalingv2.MetricSpec{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "queue"}, Target: autoscalingv2.MetricTarget{Type: target},
		}}
	}
	obj := func(target autoscalingv2.MetricTargetType) autoscalingv2.MetricSpec {
		return autoscalingv2.MetricSpec{Type: autoscalingv2.ObjectMetricSourceType, Object: &autoscalingv2.ObjectMetricSource{
			Metric:          autoscalingv2.MetricIdentifier{Name: "rps"},
			DescribedObject: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			Target:          autoscalingv2.MetricTarget{Type: target},
		}}
	}
	pods := func(target autoscalingv2.MetricTargetType) autoscalingv2.MetricSpec {
		return autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "packets"}, Target: autoscalingv2.MetricTarget{Type: target},
		}}
	}
	res := func(target autoscalingv2.MetricTargetType) autoscalingv2.MetricSpec {
		return autoscalingv2.MetricSpec{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
			Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: target},
		}}
	}
	api := &fixedMetrics{
		pods:     []metricsv1beta1.PodMetrics{podUsage("a", "10m")},
		custom:   []cmv1beta2.MetricValue{podValue("a", "4", t0)},
		object:   &cmv1beta2.MetricValue{Timestamp: metav1.Time{Time: t0}, Value: resource.MustParse("9")},
		external: []emv1beta1.ExternalMetricValue{series(t0, "12"), series(t0, "6")},
	}
	// Three replicas, two of them Ready: an AverageValue block must still
	// carry the plain sum (18000), neither /3 nor /2.
	unready := readyPod("c", "1", t0)
	unready.Status.Conditions[0].Status = corev1.ConditionFalse
	scope := Scope{Namespace: "ns", Selector: labels.Everything(), Pods: []corev1.Pod{readyPod("a", "1", t0), readyPod("b", "1", t0), unready}, CurrentReplicas: 3}
	for _, tc := range []struct {
		name    string
		spec    autoscalingv2.MetricSpec
		want    string // the JSON of the value block, after "spec"
		wantErr string
	}{
		{name: "External AverageValue", spec: ext(autoscalingv2.AverageValueMetricType), want: `"external":{"current":{"average_value":18000},"timestamp":"2026-04-05T18:10:10Z"}}`},
		{name: "External Value", spec: ext(autoscalingv2.ValueMetricType), want: `"external":{"current":{"value":18000},"ready_pod_count":2,"timestamp":"2026-04-05T18:10:10Z"}}`},
		{name: "External Utilization", spec: ext(autoscalingv2.UtilizationMetricType), wantErr: "want Value or AverageValue"},
		{name: "Object AverageValue", spec: obj(autoscalingv2.AverageValueMetricType), want: `"object":{"current":{"average_value":9000},"timestamp":"2026-04-05T18:10:10Z"}}`},
		{name: "Object Value", spec: obj(autoscalingv2.ValueMetricType), want: `"object":{"current":{"value":9000},"ready_pod_count":2,"timestamp":"2026-04-05T18:10:10Z"}}`},
		{name: "Object without a target type", spec: obj(""), wantErr: "want Value or AverageValue"},
		{name: "Pods AverageValue", spec: pods(autoscalingv2.AverageValueMetricType), want: `"pods":{"pod_metrics_info":{"a":{"Timestamp":"2026-04-05T18:10:10Z","Window":60000000000,"Value":4000}},"ready_pod_count":1,"ignored_pods":null,"missing_pods":{"b":{},"c":{}},"total_pods":3,"timestamp":"2026-04-05T18:10:10Z"}}`},
		{name: "Pods Value", spec: pods(autoscalingv2.ValueMetricType), wantErr: "want AverageValue"},
		{name: "Resource Value", spec: res(autoscalingv2.ValueMetricType), wantErr: "want Utilization or AverageValue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := (&KubeMetrics{API: api}).Gather(context.Background(), now, []autoscalingv2.MetricSpec{tc.spec}, scope)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b := marshal(t, got[0])
			if !strings.HasPrefix(b, `{"current_replicas":3,"spec":{`) || !strings.HasSuffix(b, `},`+tc.want) {
				t.Errorf("JSON\n got %s\nwant {\"current_replicas\":3,\"spec\":{...},%s", b, tc.want)
			}
		})
	}
}

// checkJSON checks a gathering result: an error containing wantErr when
// that is set, else no error and exactly the JSON want.
func checkJSON(t *testing.T, got any, err error, want, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("err = %v, want one containing %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if b := marshal(t, got); b != want {
		t.Errorf("JSON\n got %s\nwant %s", b, want)
	}
}
