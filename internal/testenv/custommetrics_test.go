package testenv

import (
	"context"
	"testing"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"
)

func TestCustomMetricsExternalSeriesBySelector(t *testing.T) {
	m := newCustomMetrics()
	m.SetExternalMetric("ns", "backlog", map[string]string{"queue": "orders"}, resource.MustParse("30"))
	m.SetExternalMetric("ns", "backlog", map[string]string{"queue": "other"}, resource.MustParse("999"))
	m.SetExternalMetric("ns", "backlog", map[string]string{"queue": "orders"}, resource.MustParse("31")) // replaces
	cases := []struct {
		name, ns, selector string
		want               []int64
		notFound           bool
	}{
		{"one series", "ns", "queue=orders", []int64{31}, false},
		{"every series", "ns", "", []int64{31, 999}, false},
		{"no match", "ns", "queue=none", nil, false},
		{"other namespace", "elsewhere", "", nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sel, err := labels.Parse(c.selector)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.GetExternalMetric(context.Background(), c.ns, sel, provider.ExternalMetricInfo{Metric: "backlog"})
			if c.notFound {
				if err == nil {
					t.Fatalf("GetExternalMetric = %v, want not found", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var values []int64
			for _, v := range got.Items {
				values = append(values, v.Value.Value())
				if v.WindowSeconds == nil || *v.WindowSeconds != metricWindowSeconds || v.MetricName != "backlog" {
					t.Errorf("series %+v lacks the name or window", v)
				}
			}
			if len(values) != len(c.want) {
				t.Fatalf("values %v, want %v", values, c.want)
			}
			for i := range values {
				if values[i] != c.want[i] {
					t.Fatalf("values %v, want %v", values, c.want)
				}
			}
		})
	}
}

func TestCustomMetricsObjectAndPodsByName(t *testing.T) {
	mapper := apimeta.NewDefaultRESTMapper(nil)
	mapper.Add(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, apimeta.RESTScopeNamespace)
	mapper.Add(schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, apimeta.RESTScopeNamespace)
	m := newCustomMetrics()
	m.bind(mapper, nil)
	deployments := schema.GroupResource{Group: "apps", Resource: "deployments"}
	m.SetObjectMetric(deployments, "ns", "web", "queue_depth", resource.MustParse("40"))
	m.SetPodsMetric("ns", "inflight", resource.MustParse("500m"))
	cases := []struct {
		name     string
		gr       schema.GroupResource
		object   string
		metric   string
		want     string
		kind     string
		notFound bool
	}{
		{"object", deployments, "web", "queue_depth", "40", "Deployment", false},
		{"any pod of the namespace", podsResource, "web-abc", "inflight", "500m", "Pod", false},
		{"other object", deployments, "api", "queue_depth", "", "", true},
		{"other metric", deployments, "web", "latency", "", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info := provider.CustomMetricInfo{GroupResource: c.gr, Namespaced: true, Metric: c.metric}
			got, err := m.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "ns", Name: c.object}, info, labels.Everything())
			if c.notFound {
				if err == nil {
					t.Fatalf("GetMetricByName = %+v, want not found", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Value.String() != c.want || got.DescribedObject.Kind != c.kind || got.DescribedObject.Name != c.object || got.Metric.Name != c.metric {
				t.Fatalf("GetMetricByName = %+v, want %s of %s %s", got, c.want, c.kind, c.object)
			}
		})
	}
	if n := len(m.ListAllMetrics()); n != 2 {
		t.Errorf("ListAllMetrics lists %d metrics, want 2", n)
	}
}
