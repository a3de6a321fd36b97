package cpa

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
	"k8s.io/metrics/pkg/client/custom_metrics"
	"k8s.io/metrics/pkg/client/external_metrics"
)

// clusterMetrics is MetricsAPI on the real aggregated APIs: metrics.k8s.io
// (metrics-server), custom.metrics.k8s.io and external.metrics.k8s.io
// (an adapter such as prometheus-adapter or KEDA).
type clusterMetrics struct {
	resource metricsclient.Interface
	custom   custom_metrics.CustomMetricsClient
	external external_metrics.ExternalMetricsClient
}

// NewMetricsAPI builds the metrics clients for cfg. Nothing is contacted
// until a spec asks for it, so a cluster without a metrics server only
// fails the ticks that need one.
func NewMetricsAPI(cfg *rest.Config, disc discovery.DiscoveryInterface, mapper meta.RESTMapper) (MetricsAPI, error) {
	res, err := metricsclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("metrics.k8s.io client: %w", err)
	}
	ext, err := external_metrics.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("external.metrics.k8s.io client: %w", err)
	}
	cm := custom_metrics.NewForConfig(cfg, mapper, custom_metrics.NewAvailableAPIsGetter(disc))
	return &clusterMetrics{resource: res, custom: cm, external: ext}, nil
}

func (c *clusterMetrics) PodMetrics(ctx context.Context, ns string, sel labels.Selector) ([]metricsv1beta1.PodMetrics, error) {
	l, err := c.resource.MetricsV1beta1().PodMetricses(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func (c *clusterMetrics) PodCustomMetrics(_ context.Context, ns string, sel labels.Selector, metric string, metricSel labels.Selector) ([]cmv1beta2.MetricValue, error) {
	l, err := c.custom.NamespacedMetrics(ns).GetForObjects(schema.GroupKind{Kind: "Pod"}, sel, metric, metricSel)
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func (c *clusterMetrics) ObjectMetric(_ context.Context, ns string, gk schema.GroupKind, name, metric string, metricSel labels.Selector) (*cmv1beta2.MetricValue, error) {
	if gk.Kind == "Namespace" && gk.Group == "" {
		return c.custom.RootScopedMetrics().GetForObject(gk, ns, metric, metricSel)
	}
	return c.custom.NamespacedMetrics(ns).GetForObject(gk, name, metric, metricSel)
}

func (c *clusterMetrics) ExternalMetrics(_ context.Context, ns, metric string, sel labels.Selector) ([]emv1beta1.ExternalMetricValue, error) {
	l, err := c.external.NamespacedMetrics(ns).List(metric, sel)
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}
