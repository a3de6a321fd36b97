package externalscaler

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Metrics are the server's Prometheus metrics. A nil *Metrics records
// nothing, so tests and embedders need not register any.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	targets  prometheus.Gauge
	polls    *prometheus.CounterVec
	// streams counts open streams: KEDA keeps StreamIsActive and
	// StreamMetricSpec open for hours, so the requests counter, which a
	// stream reaches only when it ends, would not show them.
	streams *prometheus.GaugeVec
}

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "swell_external_scaler_requests_total",
			Help: "gRPC requests served, by rpc and status code.",
		}, []string{"rpc", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "swell_external_scaler_request_duration_seconds",
			Help:    "Time to answer a unary rpc.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5},
		}, []string{"rpc"}),
		targets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "swell_external_scaler_tracked_targets",
			Help: "Distinct measured targets with a running watcher.",
		}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "swell_external_scaler_polls_total",
			Help: "Background polls of targets, by source and result (ok, error).",
		}, []string{"source", "result"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "swell_external_scaler_open_streams",
			Help: "Streaming rpcs (StreamIsActive, StreamMetricSpec) open now.",
		}, []string{"rpc"}),
	}
	reg.MustRegister(m.requests, m.latency, m.targets, m.polls, m.streams)
	return m
}

func (m *Metrics) setTargets(n int) {
	if m != nil {
		m.targets.Set(float64(n))
	}
}

func (m *Metrics) poll(source string, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.polls.WithLabelValues(source, result).Inc()
}

func (m *Metrics) observe(method string, start time.Time, err error) {
	if m == nil {
		return
	}
	rpc := shortMethod(method)
	m.requests.WithLabelValues(rpc, status.Code(err).String()).Inc()
	m.latency.WithLabelValues(rpc).Observe(time.Since(start).Seconds())
}

// shortMethod turns "/externalscaler.ExternalScaler/GetMetrics" into
// "GetMetrics".
func shortMethod(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[i+1:]
		}
	}
	return full
}

// UnaryInterceptor counts and times unary rpcs.
func (m *Metrics) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		m.observe(info.FullMethod, start, err)
		return resp, err
	}
}

// StreamInterceptor counts open streams, and streams by how they ended.
func (m *Metrics) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if m == nil {
			return h(srv, ss)
		}
		rpc := shortMethod(info.FullMethod)
		open := m.streams.WithLabelValues(rpc)
		open.Inc()
		defer open.Dec()
		err := h(srv, ss)
		m.requests.WithLabelValues(rpc, status.Code(err).String()).Inc()
		return err
	}
}
