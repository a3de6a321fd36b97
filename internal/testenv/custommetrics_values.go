package testenv

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"k8s.io/metrics/pkg/apis/external_metrics"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider/helpers"
)

// metricWindowSeconds is the window every value reports, so a client can
// tell it was read from the adapter and not defaulted.
const metricWindowSeconds = 30

// podsResource is the group-resource of Pods metrics.
var podsResource = schema.GroupResource{Resource: "pods"}

// nsMetric names a metric in a namespace.
type nsMetric struct{ Namespace, Metric string }

// objectMetric names a metric of one object.
type objectMetric struct {
	Resource        schema.GroupResource
	Namespace, Name string
	Metric          string
}

// externalSeries is one labelled series of an external metric.
type externalSeries struct {
	Labels map[string]string
	Value  resource.Quantity
}

// CustomMetrics is a test metrics adapter behind kube-apiserver's
// aggregation layer, serving custom.metrics.k8s.io (v1beta1, v1beta2) and
// external.metrics.k8s.io (v1beta1) with values the test sets. There is no
// metrics pipeline here (no Prometheus adapter, no KEDA), so a test decides
// what the APIs answer and checks that a client reads exactly that through
// the real apiserver: discovery, the aggregator's proxying, delegated
// authentication and authorization all run for real.
//
// It is built on sigs.k8s.io/custom-metrics-apiserver, the library real
// adapters use, and runs inside the test process; CustomMetrics is its
// provider of custom and external metrics.
type CustomMetrics struct {
	mu       sync.RWMutex
	pods     map[nsMetric]resource.Quantity
	objects  map[objectMetric]resource.Quantity
	external map[nsMetric][]externalSeries
	now      func() time.Time
	mapper   apimeta.RESTMapper
	objs     dynamic.Interface
}

// newCustomMetrics starts with no metrics: every query answers "not found".
func newCustomMetrics() *CustomMetrics {
	return &CustomMetrics{
		pods:     map[nsMetric]resource.Quantity{},
		objects:  map[objectMetric]resource.Quantity{},
		external: map[nsMetric][]externalSeries{},
		now:      time.Now,
	}
}

// bind gives the provider what it needs to describe objects and to list
// the pods a selector matches.
func (v *CustomMetrics) bind(mapper apimeta.RESTMapper, objs dynamic.Interface) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.mapper, v.objs = mapper, objs
}

// SetPodsMetric makes every pod of namespace report metric = q (a Pods
// metric, custom.metrics.k8s.io).
func (v *CustomMetrics) SetPodsMetric(namespace, metric string, q resource.Quantity) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.pods[nsMetric{namespace, metric}] = q
}

// SetObjectMetric makes one object report metric = q (an Object metric,
// custom.metrics.k8s.io), e.g. resource {Group: "apps", Resource:
// "deployments"} or {Resource: "services"}.
func (v *CustomMetrics) SetObjectMetric(gr schema.GroupResource, namespace, name, metric string, q resource.Quantity) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.objects[objectMetric{gr, namespace, name, metric}] = q
}

// SetExternalMetric sets the series of metric with exactly these labels
// in namespace (external.metrics.k8s.io), replacing an earlier value.
func (v *CustomMetrics) SetExternalMetric(namespace, metric string, lbls map[string]string, q resource.Quantity) {
	v.mu.Lock()
	defer v.mu.Unlock()
	key := nsMetric{namespace, metric}
	series := v.external[key]
	for i := range series {
		if maps.Equal(series[i].Labels, lbls) {
			series[i].Value = q
			return
		}
	}
	v.external[key] = append(series, externalSeries{Labels: maps.Clone(lbls), Value: q})
}

// lookup is the value of metric for one object, if set.
func (v *CustomMetrics) lookup(gr schema.GroupResource, namespace, name, metric string) (resource.Quantity, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if gr == podsResource {
		q, ok := v.pods[nsMetric{namespace, metric}]
		return q, ok
	}
	q, ok := v.objects[objectMetric{gr, namespace, name, metric}]
	return q, ok
}

// value builds the API's answer for one object.
func (v *CustomMetrics) value(name types.NamespacedName, info provider.CustomMetricInfo, q resource.Quantity, sel labels.Selector) (*custom_metrics.MetricValue, error) {
	ref, err := helpers.ReferenceFor(v.mapper, name, info)
	if err != nil {
		return nil, fmt.Errorf("describe %s %s: %w", info.GroupResource, name, err)
	}
	ms, err := metav1.ParseToLabelSelector(sel.String())
	if err != nil {
		return nil, fmt.Errorf("metric selector %q: %w", sel, err)
	}
	return &custom_metrics.MetricValue{
		DescribedObject: ref,
		Metric:          custom_metrics.MetricIdentifier{Name: info.Metric, Selector: ms},
		Timestamp:       metav1.NewTime(v.now()),
		WindowSeconds:   ptrInt64(metricWindowSeconds),
		Value:           q,
	}, nil
}

// GetMetricByName answers one object's metric.
func (v *CustomMetrics) GetMetricByName(_ context.Context, name types.NamespacedName, info provider.CustomMetricInfo, sel labels.Selector) (*custom_metrics.MetricValue, error) {
	q, ok := v.lookup(info.GroupResource, name.Namespace, name.Name, info.Metric)
	if !ok {
		return nil, provider.NewMetricNotFoundForError(info.GroupResource, info.Metric, name.Name)
	}
	return v.value(name, info, q, sel)
}

// GetMetricBySelector answers the metric for every object the selector
// matches that has a value.
func (v *CustomMetrics) GetMetricBySelector(_ context.Context, namespace string, selector labels.Selector, info provider.CustomMetricInfo, sel labels.Selector) (*custom_metrics.MetricValueList, error) {
	names, err := helpers.ListObjectNames(v.mapper, v.objs, namespace, selector, info)
	if err != nil {
		return nil, err
	}
	out := &custom_metrics.MetricValueList{}
	for _, n := range names {
		q, ok := v.lookup(info.GroupResource, namespace, n, info.Metric)
		if !ok {
			continue
		}
		mv, err := v.value(types.NamespacedName{Namespace: namespace, Name: n}, info, q, sel)
		if err != nil {
			return nil, err
		}
		out.Items = append(out.Items, *mv)
	}
	return out, nil
}

// ListAllMetrics lists what has a value, for the API's discovery.
func (v *CustomMetrics) ListAllMetrics() []provider.CustomMetricInfo {
	v.mu.RLock()
	defer v.mu.RUnlock()
	seen := map[provider.CustomMetricInfo]bool{}
	for k := range v.pods {
		seen[provider.CustomMetricInfo{GroupResource: podsResource, Namespaced: true, Metric: k.Metric}] = true
	}
	for k := range v.objects {
		seen[provider.CustomMetricInfo{GroupResource: k.Resource, Namespaced: k.Namespace != "", Metric: k.Metric}] = true
	}
	out := make([]provider.CustomMetricInfo, 0, len(seen))
	for info := range seen {
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// GetExternalMetric answers the series of the metric in namespace whose
// labels the selector matches.
func (v *CustomMetrics) GetExternalMetric(_ context.Context, namespace string, sel labels.Selector, info provider.ExternalMetricInfo) (*external_metrics.ExternalMetricValueList, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	series, ok := v.external[nsMetric{namespace, info.Metric}]
	if !ok {
		return nil, provider.NewMetricNotFoundError(schema.GroupResource{Group: "external.metrics.k8s.io"}, info.Metric)
	}
	out := &external_metrics.ExternalMetricValueList{}
	for _, s := range series {
		if !sel.Matches(labels.Set(s.Labels)) {
			continue
		}
		out.Items = append(out.Items, external_metrics.ExternalMetricValue{
			MetricName: info.Metric, MetricLabels: maps.Clone(s.Labels),
			Timestamp: metav1.NewTime(v.now()), WindowSeconds: ptrInt64(metricWindowSeconds), Value: s.Value,
		})
	}
	return out, nil
}

// ListAllExternalMetrics lists the external metrics that have a value.
func (v *CustomMetrics) ListAllExternalMetrics() []provider.ExternalMetricInfo {
	v.mu.RLock()
	defer v.mu.RUnlock()
	names := map[string]bool{}
	for k := range v.external {
		names[k.Metric] = true
	}
	out := make([]provider.ExternalMetricInfo, 0, len(names))
	for n := range names {
		out = append(out, provider.ExternalMetricInfo{Metric: n})
	}
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].Metric, out[j].Metric) < 0 })
	return out
}

func ptrInt64(v int64) *int64 { return &v }
