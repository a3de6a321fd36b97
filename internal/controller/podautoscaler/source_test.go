package podautoscaler

import (
	"context"
	"errors"
	"strings"
	"testing"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/source"
)

// fixedSources answers every queue with one source (or err).
type fixedSources struct {
	src source.Source
	err error
}

func (f fixedSources) Source(context.Context, string, string, string) (source.Source, error) {
	return f.src, f.err
}

// sample is a source answering a fixed sample or error.
type sample struct {
	s   source.Sample
	err error
}

func (s sample) Measure(context.Context) (source.Sample, error) { return s.s, s.err }
func (s sample) Close() error                                   { return nil }

func TestMeasureTurnsBacklogIntoOneAnswer(t *testing.T) {
	q := swellv1.QueueSource{ScalerConfigRef: "redis", Queue: "tasks"}
	cases := []struct {
		name    string
		sources SourceProvider
		want    string // the answer's value, or a substring of the error
		wantErr bool
	}{
		{"backlog", fixedSources{src: sample{s: source.Sample{Backlog: 12, Ready: 10, InFlight: 2}}}, "12", false},
		{"empty queue", fixedSources{src: sample{}}, "0", false},
		{"no ScalerConfig", fixedSources{err: errors.New("get ScalerConfig: not found")}, "ScalerConfig ns/redis: get ScalerConfig: not found", true},
		{"broker down", fixedSources{src: sample{err: errors.New("connection refused")}}, `measure queue "tasks": connection refused`, true},
		{"no provider", nil, "no broker sources", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &Reconciler{Sources: c.sources}
			got, src, err := r.measure(context.Background(), "ns", q, "web")
			if want := sourceOf(c.sources); src != want {
				t.Fatalf("measure returned source %v, want %v (the one asked, for push)", src, want)
			}
			if c.wantErr {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("measure = %v, %v; want an error containing %q", got, err, c.want)
				}
				return
			}
			if err != nil || len(got) != 1 || got[0].Resource != "web" || got[0].Value != c.want {
				t.Fatalf("measure = %v, %v; want [web=%s]", got, err, c.want)
			}
		})
	}
}

// sourceOf is the source a provider hands out, nil when it has none.
func sourceOf(p SourceProvider) source.Source {
	f, ok := p.(fixedSources)
	if !ok || f.err != nil {
		return nil
	}
	return f.src
}

func TestDecodeSpecMetric(t *testing.T) {
	src := &swellv1.QueueSource{ScalerConfigRef: "redis", Queue: "tasks"}
	http := &swellv1.HTTPMethod{URL: "http://m"}
	cases := []struct {
		name   string
		metric swellv1.MetricMethod
		err    string
	}{
		{"source", swellv1.MetricMethod{Source: src}, ""},
		{"http", swellv1.MetricMethod{HTTP: http}, ""},
		{"both", swellv1.MetricMethod{Source: src, HTTP: http}, "set only one of http and source"},
		{"neither", swellv1.MetricMethod{}, "set one of http and source"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pa := &swellv1.PodAutoscaler{Spec: swellv1.PodAutoscalerSpec{MinReplicas: 0, MaxReplicas: 2, Metric: c.metric, Evaluate: swellv1.EvaluateMethod{Expression: "value"}}}
			spec, err := decodeSpec(pa)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("decodeSpec = %v, want an error containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (spec.Source != nil) != (c.metric.Source != nil) || (spec.Metric != nil) != (c.metric.HTTP != nil) {
				t.Fatalf("decoded source %v, method %v from %+v", spec.Source, spec.Metric, c.metric)
			}
		})
	}
}
