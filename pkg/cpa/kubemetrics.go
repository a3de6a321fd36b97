package cpa

import (
	"context"
	"errors"
	"fmt"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// defaultMetricWindow is the window the HPA assumes when a custom metric
// does not say (upstream's metricServerDefaultMetricWindow).
const defaultMetricWindow = time.Minute

// KubernetesMetric is one kubernetesMetricSpecs entry as CPA hands it to
// user logic: snake_case keys, exactly one of the four value blocks set.
// The shape and values follow CPA v2.11+ (github.com/jthomperoo/custom-pod-autoscaler),
// which gathers with github.com/jthomperoo/k8shorizmetrics/v3 (v3.0.0, the
// last release before that library switched its JSON keys to camelCase).
type KubernetesMetric struct {
	CurrentReplicas int32                    `json:"current_replicas"`
	Spec            autoscalingv2.MetricSpec `json:"spec"`
	Resource        *ResourceMetricValues    `json:"resource,omitempty"`
	Pods            *PodsMetricValues        `json:"pods,omitempty"`
	Object          *ValueMetric             `json:"object,omitempty"`
	External        *ValueMetric             `json:"external,omitempty"`
}

// PodMetric is one pod's value. It has no JSON tags on purpose: CPA's
// scripts read the Go field names (Timestamp, Window in ns, Value).
type PodMetric struct {
	Timestamp time.Time
	Window    time.Duration
	Value     int64
}

// PodSet serialises like apimachinery's sets.String: {"name": {}}.
type PodSet map[string]struct{}

// ResourceMetricValues is a Resource metric (cpu, memory) per pod, in
// milli-units as the HPA computes them, with requests for Utilization.
type ResourceMetricValues struct {
	PodMetricsInfo map[string]PodMetric `json:"pod_metrics_info"`
	Requests       map[string]int64     `json:"requests"`
	ReadyPodCount  int64                `json:"ready_pod_count"`
	IgnoredPods    PodSet               `json:"ignored_pods"`
	MissingPods    PodSet               `json:"missing_pods"`
	TotalPods      int                  `json:"total_pods"`
	Timestamp      time.Time            `json:"timestamp,omitempty"`
}

// PodsMetricValues is a Pods (custom, per-pod) metric.
type PodsMetricValues struct {
	PodMetricsInfo map[string]PodMetric `json:"pod_metrics_info"`
	ReadyPodCount  int64                `json:"ready_pod_count"`
	IgnoredPods    PodSet               `json:"ignored_pods"`
	MissingPods    PodSet               `json:"missing_pods"`
	TotalPods      int                  `json:"total_pods"`
	Timestamp      time.Time            `json:"timestamp,omitempty"`
}

// ValueMetric is an Object or External metric. With a Value target,
// Current.Value and ReadyPodCount are set; with an AverageValue target only
// Current.AverageValue, holding the metric as read (for External, the sum
// of the matching series), not divided by the replica count: as in CPA,
// dividing is left to the evaluation (k8shorizmetrics' evaluator divides
// by current replicas, like the HPA's GetExternalPerPodMetricReplicas).
type ValueMetric struct {
	Current       MetricValue `json:"current,omitempty"`
	ReadyPodCount *int64      `json:"ready_pod_count,omitempty"`
	Timestamp     time.Time   `json:"timestamp,omitempty"`
}

// MetricValue is a value or an average value, in milli-units.
type MetricValue struct {
	Value        *int64 `json:"value,omitempty"`
	AverageValue *int64 `json:"average_value,omitempty"`
}

// MetricsAPI reads the three Kubernetes metrics APIs. The real one wraps the
// k8s.io/metrics clients; tests pass fixed values.
type MetricsAPI interface {
	PodMetrics(ctx context.Context, namespace string, selector labels.Selector) ([]metricsv1beta1.PodMetrics, error)
	PodCustomMetrics(ctx context.Context, namespace string, selector labels.Selector, metric string, metricSelector labels.Selector) ([]cmv1beta2.MetricValue, error)
	ObjectMetric(ctx context.Context, namespace string, kind schema.GroupKind, name, metric string, metricSelector labels.Selector) (*cmv1beta2.MetricValue, error)
	ExternalMetrics(ctx context.Context, namespace, metric string, selector labels.Selector) ([]emv1beta1.ExternalMetricValue, error)
}

// KubeMetrics gathers kubernetesMetricSpecs the way CPA (and the HPA before
// it) does: which pods count as ready, missing or ignored included.
type KubeMetrics struct {
	API MetricsAPI
	// CPUInitializationPeriod and InitialReadinessDelay are CPA's
	// cpuInitializationPeriod and initialReadinessDelay.
	CPUInitializationPeriod time.Duration
	InitialReadinessDelay   time.Duration
}

// Scope is what a gather pass measures: the target's pods and replicas.
type Scope struct {
	Namespace       string
	Selector        labels.Selector
	Pods            []corev1.Pod
	CurrentReplicas int32
}

// Gather measures every spec, in order. Like CPA's gatherer, a spec that
// fails does not stop the others: the returned slice holds every metric
// that was read (in spec order, the failed ones left out) and the error
// names each failure, as a *GatherError. Callers choose between failing the
// pass (requireKubernetesMetrics) and going on with what was read.
func (k *KubeMetrics) Gather(ctx context.Context, now time.Time, specs []autoscalingv2.MetricSpec, s Scope) ([]KubernetesMetric, error) {
	out := make([]KubernetesMetric, 0, len(specs))
	var errs []error
	for i, spec := range specs {
		m, err := k.gatherOne(ctx, now, spec, s)
		if err != nil {
			errs = append(errs, fmt.Errorf("kubernetesMetricSpecs[%d] (%s): %w", i, spec.Type, err))
			continue
		}
		m.CurrentReplicas, m.Spec = s.CurrentReplicas, spec
		out = append(out, m)
	}
	if len(errs) > 0 {
		return out, &GatherError{Failed: len(errs), Total: len(specs), Errs: errs}
	}
	return out, nil
}

// GatherError is Gather's error: Failed of Total specs could not be read.
type GatherError struct {
	Failed, Total int
	Errs          []error
}

func (e *GatherError) Error() string {
	return fmt.Sprintf("%d of %d Kubernetes metrics failed: %v", e.Failed, e.Total, errors.Join(e.Errs...))
}

// Unwrap gives errors.Is/As every failure.
func (e *GatherError) Unwrap() []error { return e.Errs }

// Partial says whether some metrics were read despite the error.
func (e *GatherError) Partial() bool { return e.Failed < e.Total }

func (k *KubeMetrics) gatherOne(ctx context.Context, now time.Time, spec autoscalingv2.MetricSpec, s Scope) (KubernetesMetric, error) {
	switch spec.Type {
	case autoscalingv2.ResourceMetricSourceType:
		v, err := k.resource(ctx, now, spec.Resource, s)
		return KubernetesMetric{Resource: v}, err
	case autoscalingv2.PodsMetricSourceType:
		v, err := k.pods(ctx, spec.Pods, s)
		return KubernetesMetric{Pods: v}, err
	case autoscalingv2.ObjectMetricSourceType:
		v, err := k.object(ctx, spec.Object, s)
		return KubernetesMetric{Object: v}, err
	case autoscalingv2.ExternalMetricSourceType:
		v, err := k.external(ctx, spec.External, s)
		return KubernetesMetric{External: v}, err
	}
	return KubernetesMetric{}, fmt.Errorf("metric type %q: want Resource, Pods, Object or External", spec.Type)
}

func (k *KubeMetrics) resource(ctx context.Context, now time.Time, src *autoscalingv2.ResourceMetricSource, s Scope) (*ResourceMetricValues, error) {
	if src.Target.Type != autoscalingv2.UtilizationMetricType && src.Target.Type != autoscalingv2.AverageValueMetricType {
		return nil, fmt.Errorf("resource metric %s: target.type %q: want Utilization or AverageValue", src.Name, src.Target.Type)
	}
	raw, err := k.API.PodMetrics(ctx, s.Namespace, s.Selector)
	if err != nil {
		return nil, fmt.Errorf("resource metrics (metrics.k8s.io) for %s: %w", src.Name, err)
	}
	withRequests := src.Target.Type == autoscalingv2.UtilizationMetricType
	return ResourceValues(now, s.Pods, raw, src.Name, withRequests, k.CPUInitializationPeriod, k.InitialReadinessDelay)
}

func (k *KubeMetrics) pods(ctx context.Context, src *autoscalingv2.PodsMetricSource, s Scope) (*PodsMetricValues, error) {
	if src.Target.Type != autoscalingv2.AverageValueMetricType {
		return nil, fmt.Errorf("pods metric %s: target.type %q: want AverageValue", src.Metric.Name, src.Target.Type)
	}
	sel, err := metricSelector(src.Metric.Selector)
	if err != nil {
		return nil, err
	}
	raw, err := k.API.PodCustomMetrics(ctx, s.Namespace, s.Selector, src.Metric.Name, sel)
	if err != nil {
		return nil, fmt.Errorf("pods metric %s (custom.metrics.k8s.io): %w", src.Metric.Name, err)
	}
	return PodsValues(s.Pods, raw)
}

func (k *KubeMetrics) object(ctx context.Context, src *autoscalingv2.ObjectMetricSource, s Scope) (*ValueMetric, error) {
	sel, err := metricSelector(src.Metric.Selector)
	if err != nil {
		return nil, err
	}
	gv, err := schema.ParseGroupVersion(src.DescribedObject.APIVersion)
	if err != nil {
		return nil, fmt.Errorf("object.describedObject.apiVersion %q: %w", src.DescribedObject.APIVersion, err)
	}
	gk := schema.GroupKind{Group: gv.Group, Kind: src.DescribedObject.Kind}
	v, err := k.API.ObjectMetric(ctx, s.Namespace, gk, src.DescribedObject.Name, src.Metric.Name, sel)
	if err != nil {
		return nil, fmt.Errorf("object metric %s of %s %s (custom.metrics.k8s.io): %w", src.Metric.Name, gk, src.DescribedObject.Name, err)
	}
	out, err := ObjectValue(*v, src.Target.Type, ReadyPods(s.Pods))
	if err != nil {
		return nil, fmt.Errorf("object metric %s: %w", src.Metric.Name, err)
	}
	return out, nil
}

func (k *KubeMetrics) external(ctx context.Context, src *autoscalingv2.ExternalMetricSource, s Scope) (*ValueMetric, error) {
	sel, err := metricSelector(src.Metric.Selector)
	if err != nil {
		return nil, err
	}
	raw, err := k.API.ExternalMetrics(ctx, s.Namespace, src.Metric.Name, sel)
	if err != nil {
		return nil, fmt.Errorf("external metric %s (external.metrics.k8s.io): %w", src.Metric.Name, err)
	}
	out, err := ExternalValue(raw, src.Target.Type, ReadyPods(s.Pods))
	if err != nil {
		return nil, fmt.Errorf("external metric %s: %w", src.Metric.Name, err)
	}
	return out, nil
}

func metricSelector(sel *metav1.LabelSelector) (labels.Selector, error) {
	if sel == nil {
		return labels.Everything(), nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, fmt.Errorf("metric selector %v: %w", sel, err)
	}
	return s, nil
}

// ResourceValues turns metrics.k8s.io PodMetrics into CPA's resource block:
// per-pod sums over containers in milli-units (a pod with a container
// lacking the resource has no value), pods grouped as the HPA does, and
// per-pod requests when withRequests (Utilization targets need them).
// timestamp is the first PodMetrics item's, as in CPA. An empty answer or
// no pods is an error.
func ResourceValues(now time.Time, pods []corev1.Pod, raw []metricsv1beta1.PodMetrics, name corev1.ResourceName, withRequests bool, cpuInit, readinessDelay time.Duration) (*ResourceMetricValues, error) {
	if len(raw) == 0 {
		return nil, errors.New("metrics.k8s.io returned no pod metrics")
	}
	if len(pods) == 0 {
		return nil, errors.New("no pods match the target's selector")
	}
	info := map[string]PodMetric{}
	for _, pm := range raw {
		sum, ok := containerSum(pm.Containers, name)
		if !ok {
			continue
		}
		info[pm.Name] = PodMetric{Timestamp: pm.Timestamp.Time, Window: pm.Window.Duration, Value: sum}
	}
	ts := raw[0].Timestamp.Time
	ready, ignored, missing := groupPods(now, pods, info, name, cpuInit, readinessDelay)
	for p := range ignored {
		delete(info, p)
	}
	v := &ResourceMetricValues{PodMetricsInfo: info, ReadyPodCount: ready, IgnoredPods: ignored, MissingPods: missing, TotalPods: len(pods), Timestamp: ts}
	if !withRequests {
		return v, nil
	}
	requests, err := podRequests(pods, name)
	if err != nil {
		return nil, err
	}
	v.Requests = requests
	return v, nil
}

// containerSum adds one resource over a pod's containers; a container
// without it makes the pod's value unknown, as in the HPA.
func containerSum(cs []metricsv1beta1.ContainerMetrics, name corev1.ResourceName) (int64, bool) {
	var sum int64
	for _, c := range cs {
		q, ok := c.Usage[name]
		if !ok {
			return 0, false
		}
		sum += q.MilliValue()
	}
	return sum, len(cs) > 0
}

func podRequests(pods []corev1.Pod, name corev1.ResourceName) (map[string]int64, error) {
	out := map[string]int64{}
	for _, p := range pods {
		var sum int64
		for _, c := range p.Spec.Containers {
			q, ok := c.Resources.Requests[name]
			if !ok {
				return nil, fmt.Errorf("pod %s container %s: no %s request (Utilization needs requests on every container)", p.Name, c.Name, name)
			}
			sum += q.MilliValue()
		}
		out[p.Name] = sum
	}
	return out, nil
}

// PodsValues turns custom.metrics.k8s.io values for pods into CPA's pods
// block, as CPA does: every value returned is kept (a Pods metric is never
// cpu, so no sample is discounted), ignored_pods is null, missing_pods
// lists the pods without a value, ready_pod_count the pods that are neither
// deleted, failed, pending nor missing, and timestamp is the first value's.
// No values is an error; no pods is not (an empty block with zero counts).
func PodsValues(pods []corev1.Pod, raw []cmv1beta2.MetricValue) (*PodsMetricValues, error) {
	if len(raw) == 0 {
		return nil, errors.New("custom.metrics.k8s.io returned no values for the target's pods")
	}
	ts := raw[0].Timestamp.Time
	if len(pods) == 0 {
		return &PodsMetricValues{Timestamp: ts}, nil
	}
	info := map[string]PodMetric{}
	for _, m := range raw {
		window := defaultMetricWindow
		if m.WindowSeconds != nil {
			window = time.Duration(*m.WindowSeconds) * time.Second
		}
		info[m.DescribedObject.Name] = PodMetric{Timestamp: m.Timestamp.Time, Window: window, Value: m.Value.MilliValue()}
	}
	ready, _, missing := groupPods(time.Time{}, pods, info, "", 0, 0)
	return &PodsMetricValues{PodMetricsInfo: info, ReadyPodCount: ready, MissingPods: missing, TotalPods: len(pods), Timestamp: ts}, nil
}

// ObjectValue is CPA's object block: the object's value in milli-units,
// as value (with ready_pod_count) for a Value target or as average_value
// (undivided, without ready_pod_count) for an AverageValue target.
func ObjectValue(v cmv1beta2.MetricValue, target autoscalingv2.MetricTargetType, ready int64) (*ValueMetric, error) {
	return valueMetric(v.Value.MilliValue(), v.Timestamp.Time, target, ready)
}

// ExternalValue is CPA's external block: the sum of the matching series in
// milli-units, as value (with ready_pod_count) for a Value target or as
// average_value for an AverageValue target. The sum is not divided by the
// replica count and ready_pod_count is left out, as in CPA; timestamp is the
// first series'. No series is an error.
func ExternalValue(raw []emv1beta1.ExternalMetricValue, target autoscalingv2.MetricTargetType, ready int64) (*ValueMetric, error) {
	if len(raw) == 0 {
		return nil, errors.New("no series match the metric selector")
	}
	var sum int64
	for _, v := range raw {
		sum += v.Value.MilliValue()
	}
	return valueMetric(sum, raw[0].Timestamp.Time, target, ready)
}

// valueMetric fills an Object or External block by target type; CPA
// accepts only Value and AverageValue there.
func valueMetric(milli int64, ts time.Time, target autoscalingv2.MetricTargetType, ready int64) (*ValueMetric, error) {
	out := &ValueMetric{Timestamp: ts}
	switch target {
	case autoscalingv2.ValueMetricType:
		out.Current.Value, out.ReadyPodCount = &milli, &ready
	case autoscalingv2.AverageValueMetricType:
		out.Current.AverageValue = &milli
	default:
		return nil, fmt.Errorf("target.type %q: want Value or AverageValue", target)
	}
	return out, nil
}

// ReadyPods counts the pods that are Running with condition Ready=True,
// as CPA's ready_pod_count for Object and External metrics (a pod being
// deleted still counts while it is Running and Ready).
func ReadyPods(pods []corev1.Pod) int64 {
	var n int64
	for i := range pods {
		if pods[i].Status.Phase == corev1.PodRunning && podReady(&pods[i]) {
			n++
		}
	}
	return n
}

func podReady(p *corev1.Pod) bool {
	c := readyCondition(p)
	return c != nil && c.Status == corev1.ConditionTrue
}

func readyCondition(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// groupPods sorts pods as the HPA does: deleted and failed pods are left
// out of every group; pending pods are ignored; pods without a value are
// missing; for cpu, pods still initialising (cpuInitializationPeriod) or
// not yet ready (initialReadinessDelay) are ignored too. The rest are ready.
func groupPods(now time.Time, pods []corev1.Pod, info map[string]PodMetric, name corev1.ResourceName, cpuInit, delay time.Duration) (int64, PodSet, PodSet) {
	ignored, missing := PodSet{}, PodSet{}
	var ready int64
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if p.Status.Phase == corev1.PodPending {
			ignored[p.Name] = struct{}{}
			continue
		}
		m, ok := info[p.Name]
		if !ok {
			missing[p.Name] = struct{}{}
			continue
		}
		if name == corev1.ResourceCPU && cpuUnready(now, p, m, cpuInit, delay) {
			ignored[p.Name] = struct{}{}
			continue
		}
		ready++
	}
	return ready, ignored, missing
}

// cpuUnready is the HPA's rule for discounting a pod's cpu sample.
func cpuUnready(now time.Time, p *corev1.Pod, m PodMetric, cpuInit, delay time.Duration) bool {
	c := readyCondition(p)
	if c == nil || p.Status.StartTime == nil {
		return true
	}
	start := p.Status.StartTime.Time
	if start.Add(cpuInit).After(now) {
		return c.Status == corev1.ConditionFalse || m.Timestamp.Before(c.LastTransitionTime.Add(m.Window))
	}
	return c.Status == corev1.ConditionFalse && start.Add(delay).After(c.LastTransitionTime.Time)
}
