package nodepool

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the scaler's Prometheus series, labelled by pool so several
// pools can share one registry. They live on an injected registry, never
// the global one, so tests and several scalers do not collide.
type metrics struct {
	slots   *prometheus.GaugeVec
	nodes   *prometheus.GaugeVec
	size    *prometheus.GaugeVec
	actions *prometheus.CounterVec
	errors  *prometheus.CounterVec
	passes  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		slots: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "swell", Subsystem: "nodepool", Name: "slots",
			Help: "Server slots by kind: free (ready schedulable nodes), wanted (buffer target), in_use (server pods on pool nodes), incoming (booting or ordered nodes), pending (unscheduled server pods).",
		}, []string{"pool", "kind"}),
		nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "swell", Subsystem: "nodepool", Name: "nodes",
			Help: "Pool nodes by state: ready (schedulable), booting (not Ready yet), cordoned (by Swell or anyone).",
		}, []string{"pool", "state"}),
		size: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "swell", Subsystem: "nodepool", Name: "size",
			Help: "Pool size as the scaler counts it: registered nodes or the provider's count, whichever is larger.",
		}, []string{"pool"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "swell", Subsystem: "nodepool", Name: "actions_total",
			Help: "Actions carried out: cordon, uncordon, delete (nodes), resize (calls).",
		}, []string{"pool", "action"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "swell", Subsystem: "nodepool", Name: "action_errors_total",
			Help: "Actions that failed, by action.",
		}, []string{"pool", "action"}),
		passes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "swell", Subsystem: "nodepool", Name: "pass_duration_seconds",
			Help:    "Time of one decision pass including its actions.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"pool"}),
	}
	for _, c := range []prometheus.Collector{m.slots, m.nodes, m.size, m.actions, m.errors, m.passes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(pool string, d Decision, pending int) {
	for kind, v := range map[string]int64{"free": d.Free, "wanted": d.Wanted, "in_use": d.InUse, "incoming": d.Incoming, "pending": int64(pending)} {
		m.slots.WithLabelValues(pool, kind).Set(float64(v))
	}
	for state, v := range map[string]int{"ready": d.Ready, "booting": d.Booting, "cordoned": d.Cordoned} {
		m.nodes.WithLabelValues(pool, state).Set(float64(v))
	}
	m.size.WithLabelValues(pool).Set(float64(d.Size))
}
