package externalscaler_test

import (
	"context"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/externalscaler"
	pb "github.com/swell-autoscaler/swell/pkg/externalscaler/proto"
	"github.com/swell-autoscaler/swell/pkg/externalscaler/scalertest"
)

// TestPrometheusSourceOnARealPrometheus runs Debian's Prometheus scraping a
// gauge this test exposes (client_golang's exposition, as any exporter) and
// follows the gauge through the gRPC server; a query with no series is an
// error when ignoreNullValues is false; a stopped Prometheus answers
// Unavailable, a restarted one the gauge again; a vanished exporter reads 0
// by default and Unavailable with ignoreNullValues "false".
func TestPrometheusSourceOnARealPrometheus(t *testing.T) {
	reg := prometheus.NewRegistry()
	depth := prometheus.NewGauge(prometheus.GaugeOpts{Name: "swell_test_queue_depth", Help: "Jobs waiting, set by the test."})
	reg.MustRegister(depth)
	exporter := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(exporter.Close)
	target, err := url.Parse(exporter.URL)
	if err != nil {
		t.Fatal(err)
	}
	env := testenv.New(t, testenv.Options{PrometheusTargets: []string{target.Host}})
	t.Logf("prometheus ready in %s", env.Timings["prometheus"].Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h := scalertest.Start(t, scalertest.Options{Tracker: externalscaler.TrackerOptions{Interval: 200 * time.Millisecond, MaxFailures: 2}})
	ref := &pb.ScaledObjectRef{Name: "workers", Namespace: "apps", ScalerMetadata: map[string]string{
		"source": "prometheus", "serverAddress": env.PrometheusURL,
		"query": `sum(swell_test_queue_depth{job="testenv"})`, "threshold": "10", "metricName": "queue-depth",
	}}
	const metric = "queue-depth"

	// A non-zero start shows the value comes from a scrape, not from the
	// empty result that ignoreNullValues reads as 0.
	depth.Set(3)
	expectValue(ctx, t, h, ref, metric, 3, true)
	depth.Set(42.5)
	expectValue(ctx, t, h, ref, metric, 42.5, true)
	depth.Set(0)
	expectValue(ctx, t, h, ref, metric, 0, false)

	strict := &pb.ScaledObjectRef{Name: "strict", Namespace: "apps", ScalerMetadata: map[string]string{
		"source": "prometheus", "serverAddress": env.PrometheusURL,
		"query": "sum(no_such_metric) by (job)", "ignoreNullValues": "false",
	}}
	_, err = h.Client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: strict, MetricName: "prometheus-query"})
	wantCode(t, err, codes.Unavailable, "no series")

	// A non-zero value, then Prometheus stops: Unavailable, and a 0
	// meanwhile would be a fake one. Restarted, it scrapes the gauge again.
	depth.Set(7)
	expectValue(ctx, t, h, ref, metric, 7, true)
	if err := env.StopComponent("prometheus"); err != nil {
		t.Fatal(err)
	}
	expectUnavailable(ctx, t, h, ref, metric)
	depth.Set(11)
	if err := env.RestartComponent(ctx, "prometheus", env.PrometheusReady()); err != nil {
		t.Fatal(err)
	}
	expectValue(ctx, t, h, ref, metric, 11, true)

	// The exporter goes away: Prometheus marks its series stale, the query
	// returns no series, and the default ignoreNullValues ("true", as KEDA)
	// reads that as 0, while "false" makes it an error (Unavailable).
	strictGauge := &pb.ScaledObjectRef{Name: "strict-gauge", Namespace: "apps", ScalerMetadata: map[string]string{
		"source": "prometheus", "serverAddress": env.PrometheusURL,
		"query": `sum(swell_test_queue_depth{job="testenv"})`, "ignoreNullValues": "false",
	}}
	expectValue(ctx, t, h, strictGauge, "prometheus-query", 11, true)
	exporter.Close()
	expectUnavailable(ctx, t, h, strictGauge, "prometheus-query")
	expectValue(ctx, t, h, ref, metric, 0, false)
}
