package cpa

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// promMetrics are the runner's Prometheus series, labelled with the target
// so several runners can share one Prometheus.
type promMetrics struct {
	ticks               *prometheus.CounterVec
	failures            *prometheus.CounterVec
	consecutive         prometheus.Gauge
	lastSuccess         prometheus.Gauge
	current             prometheus.Gauge
	desired             prometheus.Gauge
	evaluated           prometheus.Gauge
	scales              *prometheus.CounterVec
	kubeMetricsFailures prometheus.Counter
	methodDuration      *prometheus.HistogramVec
}

func newPromMetrics(reg prometheus.Registerer, cfg *Config) (*promMetrics, error) {
	labels := prometheus.Labels{"namespace": cfg.Namespace, "kind": cfg.ScaleTargetRef.Kind, "name": cfg.ScaleTargetRef.Name}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "swell", Subsystem: "cpa", Name: name, Help: help, ConstLabels: labels}
	}
	m := &promMetrics{
		ticks:               prometheus.NewCounterVec(prometheus.CounterOpts(opts("passes_total", "Scaler passes by result (success, failure).")), []string{"result"}),
		failures:            prometheus.NewCounterVec(prometheus.CounterOpts(opts("pass_failures_total", "Failed passes by reason (the event reason).")), []string{"reason"}),
		consecutive:         prometheus.NewGauge(prometheus.GaugeOpts(opts("consecutive_failures", "Failed passes in a row; replicas are held meanwhile."))),
		lastSuccess:         prometheus.NewGauge(prometheus.GaugeOpts(opts("last_success_timestamp_seconds", "Unix time of the last successful pass."))),
		current:             prometheus.NewGauge(prometheus.GaugeOpts(opts("current_replicas", "Replicas of the target seen by the last pass."))),
		desired:             prometheus.NewGauge(prometheus.GaugeOpts(opts("desired_replicas", "Replicas applied by the last pass (after min/max, stabilisation, behaviour)."))),
		evaluated:           prometheus.NewGauge(prometheus.GaugeOpts(opts("evaluated_replicas", "targetReplicas of the last evaluation."))),
		scales:              prometheus.NewCounterVec(prometheus.CounterOpts(opts("scales_total", "Replica changes written, by direction (up, down).")), []string{"direction"}),
		kubeMetricsFailures: prometheus.NewCounter(prometheus.CounterOpts(opts("kubernetes_metrics_failures_total", "Failed Kubernetes metrics reads that were not required."))),
		methodDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "swell", Subsystem: "cpa", Name: "method_duration_seconds", ConstLabels: labels,
			Help: "Duration of user logic calls by stage (metric, evaluate, hooks).", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"stage"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.ticks, m.failures, m.consecutive, m.lastSuccess, m.current, m.desired, m.evaluated, m.scales, m.kubeMetricsFailures, m.methodDuration} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register cpa metrics: %w", err)
	}
	return m, nil
}

func (m *promMetrics) failure(reason string, consecutive int) {
	m.ticks.WithLabelValues("failure").Inc()
	m.failures.WithLabelValues(reason).Inc()
	m.consecutive.Set(float64(consecutive))
}

func (m *promMetrics) success(now time.Time) {
	m.ticks.WithLabelValues("success").Inc()
	m.consecutive.Set(0)
	m.lastSuccess.Set(float64(now.Unix()))
}

func (m *promMetrics) scaled(from, to int32) {
	dir := "up"
	if to < from {
		dir = "down"
	}
	m.scales.WithLabelValues(dir).Inc()
}
