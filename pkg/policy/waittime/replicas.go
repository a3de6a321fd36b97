package waittime

import (
	"fmt"
	"math"
	"time"
)

// DefaultPercentile is the percentile a target refers to when none is given.
const DefaultPercentile = 0.95

// DefaultScaleDownMargin is the fraction of the target wait the prediction
// must stay under before the pool shrinks; the band between it and the
// target is the hysteresis that keeps a pool from flapping.
const DefaultScaleDownMargin = 0.8

// Inputs are the measurements one decision is made from. Durations and the
// rate are means over the estimator's smoothing window; counts are the
// latest sample.
type Inputs struct {
	// ArrivalRate is tasks arriving per second. Negative, NaN or infinite
	// means unknown.
	ArrivalRate float64
	// SustainedRate is the arrival rate held for the last few minutes
	// ([Estimate.SustainedRate]); scale-down keeps the workers it keeps
	// busy. It is separate from ArrivalRate because the smoothed rate
	// decays slowly after a spike: a floor on it would keep the spike's
	// pool for minutes after the tasks stopped. 0 (or negative, NaN,
	// infinite) means no such floor.
	SustainedRate float64
	// ServiceTime is the mean time a task occupies a worker slot. Zero or
	// negative means unknown.
	ServiceTime time.Duration
	// Concurrency is tasks one worker serves at once (slots per worker);
	// values below 1 count as 1.
	Concurrency int
	// Backlog is tasks waiting to start now.
	Backlog int64
	// InFlight is tasks being served now; the pool never shrinks below the
	// workers they occupy.
	InFlight int64
	// OldestAge is the age of the oldest waiting task, 0 when the broker
	// cannot tell. When it exceeds the target the backlog drains faster.
	OldestAge time.Duration
	// StartupTime is how long a new worker takes from creation to taking
	// tasks (measured from the pool's recent pods).
	StartupTime time.Duration
	// Current is the number of workers counting toward the pool now.
	Current int
	// MaxReplicas caps the answer; 0 means no cap beyond [MaxServers].
	MaxReplicas int
	// PollInterval is how long a new task can sit before the controller
	// sees it (the polling interval; 0 when a push notification reports
	// every enqueue). It is taken off the time the backlog has to start in.
	PollInterval time.Duration
}

// Target is what the user asks for: the Percentile of task waits (enqueue
// to start) is at most Wait.
type Target struct {
	// Wait is the target wait; must be > 0.
	Wait time.Duration
	// Percentile in (0, 1); 0 means [DefaultPercentile].
	Percentile float64
	// ScaleDownMargin in (0, 1]; 0 means [DefaultScaleDownMargin].
	ScaleDownMargin float64
}

// Validate names the field that makes t unusable.
func (t Target) Validate() error {
	switch {
	case t.Wait <= 0:
		return fmt.Errorf("targetWaitSeconds %v: must be > 0", t.Wait)
	case math.IsNaN(t.Percentile) || t.Percentile < 0 || t.Percentile >= 1:
		return fmt.Errorf("targetPercentile %v: must be in (0, 1), e.g. 0.95", t.Percentile)
	case math.IsNaN(t.ScaleDownMargin) || t.ScaleDownMargin < 0 || t.ScaleDownMargin > 1:
		return fmt.Errorf("scaleDownMargin %v: must be in (0, 1]", t.ScaleDownMargin)
	}
	return nil
}

func (t Target) percentile() float64 {
	if t.Percentile == 0 {
		return DefaultPercentile
	}
	return t.Percentile
}

func (t Target) margin() float64 {
	if t.ScaleDownMargin == 0 {
		return DefaultScaleDownMargin
	}
	return t.ScaleDownMargin
}

// Result is one decision and the figures behind it, for status and events.
type Result struct {
	// Known is false when an input was missing or invalid; the caller must
	// then hold its current count (Replicas is Current, never 0 by default).
	Known bool
	// Replicas is the number of workers to run.
	Replicas int
	// PredictedWait is the steady-state wait at the target percentile with
	// Replicas workers (M/M/c); meaningless when Unbounded.
	PredictedWait time.Duration
	// Unbounded reports that Replicas cannot keep up with the arrival rate
	// (the queue grows without limit), e.g. because MaxReplicas capped it.
	Unbounded bool
	// SteadySlots is the task slots Erlang C asks for at the target.
	SteadySlots int
	// DrainSlots is the slots added to drain the current backlog in time.
	DrainSlots int
	// Capped reports that MaxReplicas (or MaxServers) bound the answer.
	Capped bool
	// Reason explains the decision in one line.
	Reason string
}

// Replicas turns measurements and a wait target into a worker count:
//
//  1. Steady part: the smallest number of slots c with P(wait > W) ≤ 1 − p
//     in an M/M/c queue at the measured arrival rate and service time —
//     only when the target is tighter than a worker's start-up (see
//     [OnDemand]); otherwise none: waiting tasks are met by new workers.
//  2. Backlog part: slots enough to start every waiting task within the
//     target. Idle slots already running (above the steady part) drain
//     within W − PollInterval; new workers only within
//     max(W − StartupTime − PollInterval, W/2), so a slow-starting pool
//     asks for more of them. When the oldest task is already older than
//     W, both horizons shrink by W/OldestAge.
//  3. Workers = ceil(slots / Concurrency), clamped to MaxReplicas.
//  4. Scale-down band: when that is fewer than Current, the pool shrinks
//     only to the size that keeps the prediction under ScaleDownMargin × W,
//     never below the workers busy with in-flight tasks, nor below the
//     workers the sustained arrival rate keeps busy on average
//     (SustainedRate × service time / concurrency): with tasks arriving in
//     lumps they are needed again by the next lump.
//
// Missing or invalid inputs return Known false with Replicas = Current.
func Replicas(in Inputs, t Target) Result {
	hold := Result{Replicas: max(in.Current, 0)}
	if err := t.Validate(); err != nil {
		hold.Reason = "wait target unusable: " + err.Error()
		return hold
	}
	if why := missing(in); why != "" {
		hold.Reason = "model inputs unknown (" + why + "): holding " + fmt.Sprint(hold.Replicas)
		return hold
	}
	conc := min(max(in.Concurrency, 1), MaxServers)
	limitWorkers := max(MaxServers/conc, 1)
	if in.MaxReplicas > 0 {
		limitWorkers = min(in.MaxReplicas, limitWorkers)
	}
	up := size(in, t.Wait, t.percentile(), conc, limitWorkers)
	chosen := up
	downNote := ""
	if up.workers < in.Current {
		down := size(in, time.Duration(float64(t.Wait)*t.margin()), t.percentile(), conc, limitWorkers)
		busy := int(min(ceilDiv(max(in.InFlight, 0), int64(conc)), int64(limitWorkers)))
		n := max(up.workers, min(in.Current, max(down.workers, busy, loadWorkers(in, conc, limitWorkers))))
		chosen = down
		chosen.workers = n
		downNote = fmt.Sprintf("; scale-down keeps p%s under %s × %v", pct(t.percentile()), fmtG(t.margin()), t.Wait)
	}
	return finish(in, t, conc, chosen, downNote)
}

// loadWorkers is the workers the sustained arrival rate keeps busy on
// average (SustainedRate × service time / concurrency). The pool does not
// shrink below them: when tasks arrive in lumps, the workers a lump leaves
// idle are needed again by the next one, sooner than a retired worker
// could be started again. Below one worker (or with no sustained rate) it
// is 0: such a trickle is met on demand.
func loadWorkers(in Inputs, conc, limitWorkers int) int {
	workers := in.SustainedRate * in.ServiceTime.Seconds() / float64(conc)
	if !(workers >= 1) || math.IsInf(workers, 1) {
		return 0
	}
	return int(min(math.Ceil(workers-1e-9), float64(limitWorkers)))
}

// missing names the first unknown input, or "" when all are usable.
func missing(in Inputs) string {
	switch {
	case math.IsNaN(in.ArrivalRate) || math.IsInf(in.ArrivalRate, 0) || in.ArrivalRate < 0:
		return fmt.Sprintf("arrival rate %v", in.ArrivalRate)
	case in.ServiceTime <= 0:
		return fmt.Sprintf("service time %v", in.ServiceTime)
	}
	return ""
}

// OnDemand reports whether a worker started now would take a newly seen
// task within w (StartupTime + PollInterval ≤ w). The pool then keeps no
// standing reserve for the steady flow: a task that finds no free worker
// can wait for a new one, so the pool runs only the workers its queue needs
// to start within the target (the backlog part) and those busy with tasks.
// By Little's law the queue then settles near arrival rate × the target,
// and the wait near the target. Erlang C sizes the pool when the target is
// tighter than a start-up, and while the start-up time is not measured yet
// (StartupTime 0).
func OnDemand(in Inputs, w time.Duration) bool {
	return in.StartupTime > 0 && in.StartupTime+max(in.PollInterval, 0) <= w
}

// sizing is the slot and worker count for one target wait.
type sizing struct {
	steady, drain int
	workers       int
	capped        bool
}

// size computes the steady and backlog parts for target wait w.
func size(in Inputs, w time.Duration, p float64, conc, limitWorkers int) sizing {
	limit := limitWorkers * conc
	steady, ok := 0, true
	if !OnDemand(in, w) {
		steady, ok = ServersFor(in.ArrivalRate, in.ServiceTime, w, p, limit)
	}
	s := sizing{steady: steady, capped: !ok}
	s.drain = drainSlots(in, w, steady, conc)
	total := int64(steady) + int64(s.drain)
	if total > int64(limit) {
		total, s.capped = int64(limit), true
	}
	s.workers = int(ceilDiv(total, int64(conc)))
	return s
}

// drainSlots is the slots beyond steady needed to start the current
// backlog within w (see [Replicas]).
func drainSlots(in Inputs, w time.Duration, steady, conc int) int {
	backlog := float64(max(in.Backlog, 0))
	if backlog == 0 {
		return 0
	}
	sec := in.ServiceTime.Seconds()
	poll := max(in.PollInterval.Seconds(), 0)
	hNow := max(w.Seconds()-poll, w.Seconds()/2)
	hNew := max(w.Seconds()-in.StartupTime.Seconds()-poll, w.Seconds()/2)
	if in.OldestAge > w {
		f := w.Seconds() / in.OldestAge.Seconds()
		hNow, hNew = hNow*f, hNew*f
	}
	// A slot cannot start more than one task per service time sooner than
	// one service time from now, so shorter horizons buy nothing.
	hNow, hNew = max(hNow, sec), max(hNew, sec)
	spare := float64(max(in.Current*conc-steady, 0))
	// Waiting tasks need at least one slot, however short they are.
	if capacity := spare * hNow / sec; capacity >= backlog {
		return int(max(math.Ceil(backlog*sec/hNow-1e-9), 1))
	}
	remaining := backlog - spare*hNow/sec
	extra := max(math.Ceil(remaining*sec/hNew-1e-9), 1)
	return int(min(spare+extra, MaxServers))
}

// finish fills in the prediction and reason for the chosen size.
func finish(in Inputs, t Target, conc int, s sizing, downNote string) Result {
	r := Result{Known: true, Replicas: s.workers, SteadySlots: s.steady, DrainSlots: s.drain, Capped: s.capped}
	q := backlogWait(in, r.Replicas, conc)
	if !OnDemand(in, t.Wait) {
		q = WaitQuantile(r.Replicas*conc, in.ArrivalRate, in.ServiceTime, t.percentile())
		if in.Backlog > 0 {
			q = math.Max(q, backlogWait(in, r.Replicas, conc))
		}
	}
	if math.IsInf(q, 1) && in.ArrivalRate > 0 {
		r.Unbounded = true
	} else if q > 0 && !math.IsInf(q, 1) {
		r.PredictedWait = seconds(q)
	}
	predicted := r.PredictedWait.Round(time.Millisecond).String()
	if r.Unbounded {
		predicted = "unbounded"
	}
	steady := fmt.Sprintf("%d slots for p%s ≤ %v", s.steady, pct(t.percentile()), t.Wait)
	if OnDemand(in, t.Wait) {
		steady = fmt.Sprintf("no standing slots (start-up %v + poll %v fit in %v)", in.StartupTime.Round(time.Second), in.PollInterval, t.Wait)
	}
	r.Reason = fmt.Sprintf("arrivals %s/s × service %v = %s busy slots: %s, +%d to drain backlog %d → %d workers × %d (predicted p%s %s)%s",
		fmtG(in.ArrivalRate), in.ServiceTime.Round(time.Millisecond), fmtG(in.ArrivalRate*in.ServiceTime.Seconds()),
		steady, s.drain, max(in.Backlog, 0), r.Replicas, conc, pct(t.percentile()), predicted, downNote)
	if s.capped {
		r.Reason += "; capped by maxReplicas"
	}
	return r
}

// backlogWait is the time in seconds the chosen pool takes to start the
// tasks waiting now, each of its slots starting one per service time, plus
// a start-up when workers are added and the poll that sees a task (with no
// task waiting: 0 when a slot is free, else a poll and a start-up). It is
// the on-demand regime's prediction (the queue then holds about the
// arrivals of one target, so this stays near it); in the Erlang regime the
// prediction is the larger of it and the steady-state quantile.
func backlogWait(in Inputs, replicas, conc int) float64 {
	lag := max(in.PollInterval.Seconds(), 0)
	if replicas > in.Current {
		lag += max(in.StartupTime.Seconds(), 0)
	}
	backlog := float64(max(in.Backlog, 0))
	slots := float64(replicas * conc)
	if backlog == 0 {
		// A new task starts at once on a free slot, else on a new worker.
		if slots > float64(max(in.InFlight, 0)) {
			return 0
		}
		return max(in.PollInterval.Seconds(), 0) + max(in.StartupTime.Seconds(), 0)
	}
	if slots <= 0 {
		return math.Inf(1)
	}
	return lag + backlog*in.ServiceTime.Seconds()/slots
}

func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}

func fmtG(x float64) string { return fmt.Sprintf("%.3g", x) }

func pct(p float64) string { return fmt.Sprintf("%.4g", p*100) }

// seconds converts a non-negative number of seconds to a Duration,
// saturating instead of overflowing.
func seconds(x float64) time.Duration {
	ns := x * float64(time.Second)
	if math.IsNaN(ns) || ns <= 0 {
		return 0
	}
	if ns >= math.MaxInt64/2 {
		return math.MaxInt64 / 2
	}
	return time.Duration(ns)
}
