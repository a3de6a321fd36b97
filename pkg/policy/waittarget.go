package policy

import (
	"math"
	"slices"
	"time"

	"github.com/swell-autoscaler/swell/pkg/policy/waittime"
)

// The wait-time target's sizing around pkg/policy/waittime: what feeds the
// estimator, when the pool counts as idle, the start-up time, and what the
// pool asks for while the model is not known. The QWorker controller and
// the simulator's swell-wait policy both call WaitMemory.Size, so a
// simulated wait target is the shipped one; fallback and behavior follow
// in QWorkerMemory.Settle, as for the ratio.
const (
	// WaitIdleAfter is how long a wait-target pool must see no finished
	// task (and a backlog at or below activationThreshold) before it
	// counts as inactive and falls to minReplicas (longer for slow tasks,
	// see WaitMemory.IdleAfter). Under a wait target a busy pool keeps its
	// queue near empty, so an empty queue alone does not mean "no work".
	WaitIdleAfter = 60 * time.Second
	// WaitStartupSamples is how many of the pool's newest ready pods the
	// start-up time is the median of.
	WaitStartupSamples = 5
)

// WaitReading is one pass's measurement for a wait target: the queue, and
// what the workers and their pods say.
type WaitReading struct {
	// Queue is the source's reading; a source that reports only Backlog
	// counts it all as waiting.
	Queue QueueReading
	// OldestAge is the oldest waiting task's age, 0 when the broker cannot
	// tell.
	OldestAge time.Duration
	// Completed and BusySeconds are the pool's cumulative finished tasks
	// and busy slot-seconds; HasCompleted is false while they are unknown
	// (workers that never reported).
	Completed    int64
	BusySeconds  float64
	HasCompleted bool
	// Concurrency is the tasks one worker serves at once (below 1: 1).
	Concurrency int32
	// Startups are created → ready times of the pool's ready pods, newest
	// first; with none, the last measured start-up time stays.
	Startups []time.Duration
	// Active is the pool's running workers.
	Active int32
}

// WaitState says which branch of the sizing decided.
type WaitState int

const (
	// WaitModelled means the model knew its inputs and sized the pool.
	WaitModelled WaitState = iota
	// WaitUnknown means an input is missing: the pool holds its previous size
	// and grows only as scalingFactor says.
	WaitUnknown
	// WaitIdle means no work for IdleAfter: the pool goes to minReplicas.
	WaitIdle
)

// WaitSized is the wait target's raw count and the figures behind it.
type WaitSized struct {
	// Raw is the pool size before the fallback guard and behavior, within
	// min and max.
	Raw   int32
	State WaitState
	// Queued and InFlight are the tasks waiting and in service as the
	// model saw them.
	Queued, InFlight int64
	// IdleAfter is the idle time that sends the pool to minReplicas.
	IdleAfter time.Duration
	// Estimate, Inputs and Result are the model's (zero when idle).
	Estimate waittime.Estimate
	Inputs   waittime.Inputs
	Result   waittime.Result
}

// WaitMemory is what a wait target remembers between passes. The zero
// value is ready and uses the estimator's defaults.
type WaitMemory struct {
	est waittime.Estimator
	// lastWork is when the pool last had work: a backlog above the
	// activation threshold or a task finished.
	lastWork  time.Time
	lastTasks int64
	startup   time.Duration
}

// Size folds r into the estimator and sizes the pool for target t, polled
// every poll (0 with push notifications): minReplicas after IdleAfter
// without work; while arrival rate or service time is unknown, previous
// (the last decision) or what scalingFactor asks for, whichever is more,
// so a new pool never shrinks on a guess; otherwise waittime.Replicas.
// Every answer is within min and max.
func (m *WaitMemory) Size(now time.Time, p QWorkerPolicy, t waittime.Target, poll time.Duration, previous int32, r WaitReading) WaitSized {
	q := r.Queue
	queued, inFlight := q.Ready, q.InFlight
	if queued == 0 && inFlight == 0 && q.Backlog > 0 {
		queued = q.Backlog
	}
	m.observe(now, queued, inFlight, r)
	s := p.Sizing
	out := WaitSized{Queued: queued, InFlight: inFlight, IdleAfter: m.IdleAfter(now)}
	if queued+max(inFlight, 0) > s.ActivationThreshold || m.lastWork.IsZero() {
		m.lastWork = now
	}
	if now.Sub(m.lastWork) >= out.IdleAfter {
		out.Raw, out.State = clamp(s.MinReplicas, s.MinReplicas, s.MaxReplicas), WaitIdle
		return out
	}
	out.Estimate = m.est.Estimate(now)
	out.Inputs = waittime.Inputs{
		ArrivalRate: out.Estimate.ArrivalRate, SustainedRate: out.Estimate.SustainedRate,
		ServiceTime: out.Estimate.ServiceTime, Concurrency: int(max(r.Concurrency, 1)),
		Backlog: queued, InFlight: inFlight, OldestAge: r.OldestAge, StartupTime: m.startup,
		Current: int(r.Active), MaxReplicas: int(s.MaxReplicas),
		// A new task can sit up to one poll before it is seen.
		PollInterval: poll,
	}
	out.Result = waittime.Replicas(out.Inputs, t)
	if !out.Estimate.Known || !out.Result.Known {
		out.Raw, out.State = clamp(max(previous, p.Ratio(q)), s.MinReplicas, s.MaxReplicas), WaitUnknown
		return out
	}
	out.Raw = clamp(int32(min(out.Result.Replicas, math.MaxInt32)), s.MinReplicas, s.MaxReplicas)
	return out
}

// IdleAfter is WaitIdleAfter, or three service times for slow tasks: a
// pool busy with long tasks finishes none for a while.
func (m *WaitMemory) IdleAfter(now time.Time) time.Duration {
	return max(WaitIdleAfter, 3*m.est.Estimate(now).ServiceTime)
}

// observe feeds the estimator and notes work and start-up times.
func (m *WaitMemory) observe(now time.Time, queued, inFlight int64, r WaitReading) {
	if r.Completed != m.lastTasks {
		m.lastWork, m.lastTasks = now, r.Completed
	}
	if n := min(len(r.Startups), WaitStartupSamples); n > 0 {
		ups := slices.Clone(r.Startups[:n])
		slices.Sort(ups)
		m.startup = ups[n/2]
	}
	m.est.Observe(now, waittime.Observation{
		Backlog: queued, InFlight: inFlight,
		Completed: r.Completed, HasCompleted: r.HasCompleted,
		BusySeconds: r.BusySeconds, HasBusy: r.HasCompleted,
	})
}
