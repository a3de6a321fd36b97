// Package stats is how Swell's worker SDKs report what they did — tasks
// completed, failed and dead-lettered, and time spent on them — and how the
// controller reads it, for the wait-time target (QWorker
// spec.scaleConfig.targetWaitSeconds) and the per-QWorker task metric.
//
// Each worker keeps cumulative counters in memory and writes them to one
// annotation on its own pod, swell.dev/worker-stats, at most once per
// report interval (default 10 s) and only when they changed, plus once when
// it leaves. A task costs no API write; an idle pool writes nothing. The
// controller already watches the pool's pods, so it reads the reports from
// its cache without a request of its own, for every broker alike.
//
// The counters are cumulative since the worker process started; a restarted
// container starts again from zero, which [Tracker] reads as a reset, not
// as negative work.
package stats

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// Annotation is the pod annotation holding a worker's report.
const Annotation = "swell.dev/worker-stats"

// DefaultInterval is how often a busy worker writes its report.
const DefaultInterval = 10 * time.Second

// EnvInterval overrides DefaultInterval in a worker pod (seconds, e.g. "2").
const EnvInterval = "SWELL_STATS_INTERVAL"

// Report is one worker's cumulative counters, the annotation's JSON value,
// e.g. {"tasks":120,"busySeconds":96.5,"concurrency":1,"failed":4,"deadLettered":1}.
// Failed and DeadLettered are left out while zero, so a worker whose tasks
// all succeed writes what workers wrote before they existed.
type Report struct {
	// Tasks is how many tasks the worker finished (acknowledged or handed
	// back) since it started.
	Tasks int64 `json:"tasks"`
	// BusySeconds is the slot-time spent in the handler since start: with
	// concurrency c, c tasks running for a second add c seconds.
	BusySeconds float64 `json:"busySeconds"`
	// Concurrency is how many tasks the worker runs at once.
	Concurrency int32 `json:"concurrency"`
	// Failed is how many of Tasks the handler failed, so the worker handed
	// them back to the queue (to be retried or dead-lettered).
	Failed int64 `json:"failed,omitempty"`
	// DeadLettered is how many tasks the worker's queue moved to its
	// dead-letter destination after their last allowed attempt.
	DeadLettered int64 `json:"deadLettered,omitempty"`
}

// Encode is the annotation value of r.
func Encode(r Report) string {
	r.BusySeconds = math.Round(r.BusySeconds*1000) / 1000
	b, _ := json.Marshal(r) // a struct of finite numbers always marshals
	return string(b)
}

// Decode parses an annotation value, refusing values no worker writes
// (negative or non-finite counters, concurrency below 1, more failed tasks
// than tasks).
func Decode(s string) (Report, error) {
	var r Report
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return Report{}, fmt.Errorf("annotation %s: %w", Annotation, err)
	}
	if r.Tasks < 0 || r.BusySeconds < 0 || math.IsNaN(r.BusySeconds) || math.IsInf(r.BusySeconds, 0) || r.Concurrency < 1 {
		return Report{}, fmt.Errorf("annotation %s: %q: want tasks ≥ 0, finite busySeconds ≥ 0, concurrency ≥ 1", Annotation, s)
	}
	if r.Failed < 0 || r.Failed > r.Tasks || r.DeadLettered < 0 {
		return Report{}, fmt.Errorf("annotation %s: %q: want 0 ≤ failed ≤ tasks, deadLettered ≥ 0", Annotation, s)
	}
	return r, nil
}

// Recorder counts a worker's tasks, for the SDK. It is not safe for
// concurrent use; a worker running tasks in parallel guards it.
type Recorder struct {
	report  Report
	written Report
	lastAt  time.Time
}

// NewRecorder starts counting for a worker running concurrency tasks at once.
func NewRecorder(concurrency int32) *Recorder {
	return &Recorder{report: Report{Concurrency: max(concurrency, 1)}, written: Report{Concurrency: max(concurrency, 1)}}
}

// Task records one finished task that took busy.
func (r *Recorder) Task(busy time.Duration) {
	r.report.Tasks++
	r.report.BusySeconds += max(busy.Seconds(), 0)
}

// Failure records one task whose handler failed after busy: it counts as a
// finished task (the worker is done with it) and as a failed one.
func (r *Recorder) Failure(busy time.Duration) {
	r.Task(busy)
	r.report.Failed++
}

// DeadLettered takes the queue's cumulative count of dead-lettered tasks
// (the queue, not the worker, decides when a task has had its last
// attempt). The count never goes down: a smaller value is ignored.
func (r *Recorder) DeadLettered(total int64) {
	r.report.DeadLettered = max(r.report.DeadLettered, total)
}

// Due returns the report to write at now, or false when nothing changed
// since the last write or that write was less than interval ago. Call
// Written with the report once it is written.
func (r *Recorder) Due(now time.Time, interval time.Duration) (Report, bool) {
	if !r.Changed() || (!r.lastAt.IsZero() && now.Sub(r.lastAt) < interval) {
		return Report{}, false
	}
	return r.report, true
}

// Current is the report as it stands.
func (r *Recorder) Current() Report { return r.report }

// Changed reports whether the counters moved since the last write.
func (r *Recorder) Changed() bool { return r.report != r.written }

// Written records that rep (from Due or Current) was written at now.
func (r *Recorder) Written(now time.Time, rep Report) {
	r.lastAt, r.written = now, rep
}

// Pool is a pool's counters summed over its workers' reports since the
// Tracker started: they only grow, whichever pods come, go or restart.
type Pool struct {
	// Tasks is tasks finished by the pool.
	Tasks int64
	// Failed is how many of Tasks the handler failed.
	Failed int64
	// DeadLettered is tasks the workers' queues dead-lettered.
	DeadLettered int64
	// BusySeconds is slot-seconds spent on them.
	BusySeconds float64
	// Concurrency is the tasks one worker runs at once (the largest any
	// reporting worker gave; the last known when none reports now).
	Concurrency int32
	// Reporting is how many workers carried a report in the last Observe.
	Reporting int
}

// Tracker folds per-worker reports into pool-wide counters. The first
// Observe is a baseline (work done before the tracker started is not
// counted); afterwards a worker's report counts by its change since the
// worker was last seen, a worker seen for the first time by its whole
// counters (it started since), and a report that went down (a restarted
// container) as a fresh start. Its zero value is ready to use.
type Tracker struct {
	last     map[string]Report
	total    Pool
	baseline bool
}

// Observe takes the current report of every worker that has one, keyed by
// a stable worker identity (the pod UID), and returns the pool's counters.
func (t *Tracker) Observe(reports map[string]Report) Pool {
	counted := t.baseline
	t.baseline = true
	next := make(map[string]Report, len(reports))
	for id, r := range reports {
		next[id] = r
		if !counted {
			continue
		}
		prev, seen := t.last[id]
		if !seen || wentDown(prev, r) {
			prev = Report{}
		}
		t.total.Tasks += r.Tasks - prev.Tasks
		t.total.BusySeconds += r.BusySeconds - prev.BusySeconds
		t.total.Failed += r.Failed - prev.Failed
		t.total.DeadLettered += r.DeadLettered - prev.DeadLettered
	}
	t.last = next
	t.total.Reporting = len(reports)
	if c := maxConcurrency(reports); c > 0 {
		t.total.Concurrency = c
	}
	return t.total
}

// wentDown reports whether any counter of cur is below prev: the worker's
// container restarted and counts from zero again.
func wentDown(prev, cur Report) bool {
	return cur.Tasks < prev.Tasks || cur.BusySeconds < prev.BusySeconds || cur.Failed < prev.Failed || cur.DeadLettered < prev.DeadLettered
}

// Started reports whether Observe ran at least once (a baseline exists).
func (t *Tracker) Started() bool { return t.baseline }

func maxConcurrency(reports map[string]Report) int32 {
	c := int32(0)
	for _, r := range reports {
		c = max(c, r.Concurrency)
	}
	return c
}
