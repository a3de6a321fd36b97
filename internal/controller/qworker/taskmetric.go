package qworker

import (
	"github.com/swell-autoscaler/swell/pkg/source/stats"
)

// The task metric, swell_qworker_worker_tasks_total{outcome}, is the pool's
// worker reports (swell.dev/worker-stats, written by Swell's SDKs) summed
// over its pods: what the workers did since the controller started, by
// outcome. The reports are cumulative per worker process and start again
// from zero when a container restarts; stats.Tracker turns them into pool
// counters that never go down, whichever pods come, go or restart.

// Outcomes of swell_qworker_worker_tasks_total.
const (
	// outcomeDone: the handler succeeded and the task was acknowledged.
	outcomeDone = "done"
	// outcomeFailed: the handler failed and the task was handed back.
	outcomeFailed = "failed"
	// outcomeDeadLettered: the queue moved the task to its dead-letter
	// destination (its last attempt is counted as failed too).
	outcomeDeadLettered = "dead_lettered"
)

// taskCounts is how many tasks the pool's workers finished, by outcome.
type taskCounts struct {
	Done, Failed, DeadLettered int64
}

// taskOutcomes is what the task metric remembers about one QWorker.
type taskOutcomes struct {
	tracker stats.Tracker
	// total is what was exported so far; reported turns true with the
	// first report, so a pool without Swell's SDK gets no series.
	total    taskCounts
	reported bool
}

// observe folds this pass's reports (by pod UID) into the pool's counters
// and returns the growth since the last pass, and whether the pool's
// workers ever reported (false: export nothing).
func (o *taskOutcomes) observe(reports map[string]stats.Report) (taskCounts, bool) {
	p := o.tracker.Observe(reports)
	o.reported = o.reported || len(reports) > 0
	// Done is tasks minus failed; each only grows, but their difference
	// could shrink on a malformed report, and a counter must not.
	next := taskCounts{
		Done:         max(o.total.Done, p.Tasks-p.Failed),
		Failed:       p.Failed,
		DeadLettered: p.DeadLettered,
	}
	d := taskCounts{Done: next.Done - o.total.Done, Failed: next.Failed - o.total.Failed, DeadLettered: next.DeadLettered - o.total.DeadLettered}
	o.total = next
	return d, o.reported
}

// countTasks folds this pass's pod reading (observeWorkers) into the task
// metric's counters: the growth since the last pass, and whether to export.
func (st *workerState) countTasks() (taskCounts, bool) {
	return st.tasks.observe(st.wait.reading.Reports)
}
