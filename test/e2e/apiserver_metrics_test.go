package e2e

import (
	"bytes"
	"context"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// apiSeries is one series of a metric family the API server exports: its
// labels and its value (counter or gauge).
type apiSeries struct {
	labels map[string]string
	value  float64
}

// apiserverSeries reads one metric family from the API server's own
// /metrics, so that tests count requests as the API server saw them rather
// than as the client believes it sent them.
func apiserverSeries(ctx context.Context, tb testing.TB, family string) []apiSeries {
	tb.Helper()
	raw, err := env.Clientset.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		tb.Fatalf("read the API server's /metrics: %v", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		tb.Fatalf("parse the API server's /metrics: %v", err)
	}
	mf := families[family]
	if mf == nil {
		return nil
	}
	out := make([]apiSeries, 0, len(mf.GetMetric()))
	for _, m := range mf.GetMetric() {
		s := apiSeries{labels: map[string]string{}, value: seriesValue(m)}
		for _, l := range m.GetLabel() {
			s.labels[l.GetName()] = l.GetValue()
		}
		out = append(out, s)
	}
	return out
}

func seriesValue(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// sumAPIServer sums a family's series whose labels hold every want pair
// (a label absent from a series reads as "").
func sumAPIServer(ctx context.Context, tb testing.TB, family string, want map[string]string) float64 {
	tb.Helper()
	sum := 0.0
	for _, s := range apiserverSeries(ctx, tb, family) {
		if s.matches(want) {
			sum += s.value
		}
	}
	return sum
}

func (s apiSeries) matches(want map[string]string) bool {
	for k, v := range want {
		if s.labels[k] != v {
			return false
		}
	}
	return true
}
