package qworker

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
)

// Metrics are the QWorker controller's Prometheus series. Reconcile latency
// and errors come from controller-runtime's own controller_runtime_* series.
type Metrics struct {
	backlog      *prometheus.GaugeVec
	desired      *prometheus.GaugeVec
	current      *prometheus.GaugeVec
	ready        *prometheus.GaugeVec
	sourceErrors *prometheus.CounterVec
	// measurements counts queue measurements by trigger (schedule.go).
	measurements *prometheus.CounterVec
	podsCreated  prometheus.Counter
	podsRetired  prometheus.Counter
	// handBacksDropped counts QScaler SDK hand-back placeholders removed
	// from queues (retirement mode QScalerSDK).
	handBacksDropped prometheus.Counter
	// workerTaskOutcomes counts the tasks the pool's workers reported, by
	// outcome (taskmetric.go).
	workerTaskOutcomes *prometheus.CounterVec
}

// NewMetrics creates the series and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	labels := []string{"namespace", "qworker"}
	m := &Metrics{
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "swell", Subsystem: "qworker", Name: "backlog",
			Help: "Last measured queue backlog (queued plus unacknowledged messages)."}, labels),
		desired: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "swell", Subsystem: "qworker", Name: "desired_replicas",
			Help: "Desired worker pods after behaviour and fallback."}, labels),
		current: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "swell", Subsystem: "qworker", Name: "current_replicas",
			Help: "Worker pods alive (not finished, not terminating), retiring ones included."}, labels),
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "swell", Subsystem: "qworker", Name: "ready_replicas",
			Help: "Ready worker pods not retiring."}, labels),
		sourceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "swell", Subsystem: "qworker", Name: "source_errors_total",
			Help: "Failed queue measurements."}, labels),
		measurements: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "swell", Subsystem: "qworker", Name: "measurements_total",
			Help: "Queue measurements started, by trigger: poll (the polling interval), push (an early wake-up by the broker), spec (queue or ScalerConfig changed, or the first)."},
			[]string{"namespace", "qworker", "trigger"}),
		podsCreated: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "swell", Subsystem: "qworker", Name: "pods_created_total",
			Help: "Worker pods created."}),
		podsRetired: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "swell", Subsystem: "qworker", Name: "pods_retired_total",
			Help: "Worker pods chosen for retirement."}),
		handBacksDropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "swell", Subsystem: "qworker", Name: "handbacks_dropped_total",
			Help: "Empty hand-back messages of QScaler's Python SDK (a pickled None) removed from Redis lists before measuring (retirement mode QScalerSDK)."}),
		workerTaskOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "swell", Subsystem: "qworker", Name: "worker_tasks_total",
			Help: "Tasks the QWorker's workers finished since the controller started, summed over their pods' swell.dev/worker-stats reports (Swell's SDKs), by outcome: done (acknowledged), failed (the handler failed; handed back for a retry or a dead letter), dead_lettered (moved to the queue's dead-letter destination; its last attempt also counts as failed)."},
			[]string{"namespace", "qworker", "outcome"}),
	}
	for _, c := range []prometheus.Collector{m.backlog, m.desired, m.current, m.ready, m.sourceErrors, m.measurements, m.podsCreated, m.podsRetired, m.handBacksDropped, m.workerTaskOutcomes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe sets the pool's series; fresh is true when d is a new decision
// (a failed measurement is counted once, not on every pass acting on it).
func (m *Metrics) observe(key types.NamespacedName, d decision, v poolView, fresh bool) {
	l := prometheus.Labels{"namespace": key.Namespace, "qworker": key.Name}
	if d.MeasureErr != nil {
		if fresh {
			m.sourceErrors.With(l).Inc()
		}
	} else {
		m.backlog.With(l).Set(float64(d.Backlog))
	}
	m.desired.With(l).Set(float64(d.Desired))
	m.current.With(l).Set(float64(v.alive))
	m.ready.With(l).Set(float64(v.ready))
}

// forget drops the series of a deleted QWorker.
func (m *Metrics) forget(key types.NamespacedName) {
	l := prometheus.Labels{"namespace": key.Namespace, "qworker": key.Name}
	for _, g := range []*prometheus.GaugeVec{m.backlog, m.desired, m.current, m.ready} {
		g.Delete(l)
	}
	m.sourceErrors.Delete(l)
	m.measurements.DeletePartialMatch(l)
	m.workerTaskOutcomes.DeletePartialMatch(l)
}

// workerTasks adds the growth of the pool's task counters (taskmetric.go);
// export is false while no worker of the pool ever reported.
func (m *Metrics) workerTasks(key types.NamespacedName, grown taskCounts, export bool) {
	if m == nil || m.workerTaskOutcomes == nil || !export {
		return
	}
	for outcome, n := range map[string]int64{outcomeDone: grown.Done, outcomeFailed: grown.Failed, outcomeDeadLettered: grown.DeadLettered} {
		m.workerTaskOutcomes.WithLabelValues(key.Namespace, key.Name, outcome).Add(float64(n))
	}
}

// measured counts a measurement started for key.
func (m *Metrics) measured(key types.NamespacedName, trigger string) {
	if m == nil || m.measurements == nil {
		return
	}
	m.measurements.WithLabelValues(key.Namespace, key.Name, trigger).Inc()
}
