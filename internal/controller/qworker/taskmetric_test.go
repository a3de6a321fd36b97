package qworker

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"

	"github.com/swell-autoscaler/swell/pkg/source/stats"
)

// TestWorkerTasksMetricNeverDecreases follows a pool through pods that
// appear, report, restart to zero and disappear: each outcome's counter
// grows by what the workers did and never goes down.
func TestWorkerTasksMetricNeverDecreases(t *testing.T) {
	rep := func(tasks, failed, dead int64) stats.Report {
		return stats.Report{Tasks: tasks, BusySeconds: float64(tasks), Concurrency: 1, Failed: failed, DeadLettered: dead}
	}
	steps := []struct {
		name    string
		reports map[string]stats.Report
		want    taskCounts
	}{
		{name: "controller starts: work done before is the baseline", reports: map[string]stats.Report{"a": rep(10, 3, 1)}, want: taskCounts{}},
		{name: "a worker reports more", reports: map[string]stats.Report{"a": rep(15, 5, 2)}, want: taskCounts{Done: 3, Failed: 2, DeadLettered: 1}},
		{name: "a new pod counts whole", reports: map[string]stats.Report{"a": rep(15, 5, 2), "b": rep(4, 1, 1)}, want: taskCounts{Done: 6, Failed: 3, DeadLettered: 2}},
		{name: "a restart to zero takes nothing away", reports: map[string]stats.Report{"a": rep(0, 0, 0), "b": rep(4, 1, 1)}, want: taskCounts{Done: 6, Failed: 3, DeadLettered: 2}},
		{name: "the restarted worker counts from zero", reports: map[string]stats.Report{"a": rep(2, 1, 1), "b": rep(4, 1, 1)}, want: taskCounts{Done: 7, Failed: 4, DeadLettered: 3}},
		{name: "a pod gone keeps its counted tasks", reports: map[string]stats.Report{"a": rep(3, 1, 1)}, want: taskCounts{Done: 8, Failed: 4, DeadLettered: 3}},
		{name: "no pod left: counters stay", reports: map[string]stats.Report{}, want: taskCounts{Done: 8, Failed: 4, DeadLettered: 3}},
	}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: "ns", Name: "qw"}
	st := &workerState{}
	for _, s := range steps {
		st.observeWorkers(nil)
		st.wait.reading.Reports = s.reports
		grown, export := st.countTasks()
		m.workerTasks(key, grown, export)
		got := taskCounts{
			Done:         int64(testutil.ToFloat64(m.workerTaskOutcomes.WithLabelValues("ns", "qw", outcomeDone))),
			Failed:       int64(testutil.ToFloat64(m.workerTaskOutcomes.WithLabelValues("ns", "qw", outcomeFailed))),
			DeadLettered: int64(testutil.ToFloat64(m.workerTaskOutcomes.WithLabelValues("ns", "qw", outcomeDeadLettered))),
		}
		if got != s.want {
			t.Fatalf("%s: counters %+v, want %+v", s.name, got, s.want)
		}
	}
	m.forget(key)
	if n := testutil.CollectAndCount(m.workerTaskOutcomes); n != 0 {
		t.Fatalf("a deleted QWorker keeps %d task series", n)
	}
}

// TestWorkerTasksMetricWaitsForAReport checks that a pool whose workers
// never report (no Swell SDK) gets no series, and that a pod appearing
// after the controller started counts whole.
func TestWorkerTasksMetricWaitsForAReport(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: "ns", Name: "qw"}
	st := &workerState{}
	for range 3 {
		st.observeWorkers(nil)
		grown, export := st.countTasks()
		m.workerTasks(key, grown, export)
	}
	if n := testutil.CollectAndCount(m.workerTaskOutcomes); n != 0 {
		t.Fatalf("%d series for a pool that never reported, want none", n)
	}
	st.observeWorkers(nil)
	st.wait.reading.Reports = map[string]stats.Report{"a": {Tasks: 5, BusySeconds: 1, Concurrency: 1, Failed: 2}}
	grown, export := st.countTasks()
	m.workerTasks(key, grown, export)
	if got := testutil.ToFloat64(m.workerTaskOutcomes.WithLabelValues("ns", "qw", outcomeDone)); got != 3 {
		t.Fatalf("done = %g, want 3", got)
	}
	if got := testutil.ToFloat64(m.workerTaskOutcomes.WithLabelValues("ns", "qw", outcomeFailed)); got != 2 {
		t.Fatalf("failed = %g, want 2", got)
	}
}

// TestTaskOutcomesDoneNeverShrinks checks the done counter against a report
// whose failures grew more than its tasks (no SDK writes one; Decode
// refuses failed > tasks, not this): done holds rather than going down.
func TestTaskOutcomesDoneNeverShrinks(t *testing.T) {
	var o taskOutcomes
	o.observe(map[string]stats.Report{"a": {Tasks: 10, Failed: 2, Concurrency: 1}})
	if d, _ := o.observe(map[string]stats.Report{"a": {Tasks: 11, Failed: 5, Concurrency: 1}}); d != (taskCounts{Done: 0, Failed: 3}) {
		t.Fatalf("growth %+v, want done 0, failed 3", d)
	}
	if d, _ := o.observe(map[string]stats.Report{"a": {Tasks: 20, Failed: 5, Concurrency: 1}}); d != (taskCounts{Done: 7}) {
		t.Fatalf("growth %+v, want done 7 (15 done in all, 8 counted before)", d)
	}
}
