package waittime

import (
	"math"
	"time"
)

// Default smoothing for [Estimator].
const (
	// DefaultHalfLife is how long until an old rate counts half as much as
	// a new one: long enough to smooth Poisson noise at a few tasks per
	// second, short enough to follow a ramp within a minute. (30 s gave
	// the best pod-hours at equal p95 wait across examples/sim.)
	DefaultHalfLife = 30 * time.Second
	// DefaultStaleAfter is how old the last usable observation may be
	// before the estimate is unknown again.
	DefaultStaleAfter = 5 * time.Minute
	// DefaultGrowth is the default [Estimator.Growth].
	DefaultGrowth = 2.0
	// DefaultSustainedWindow is the default [Estimator.SustainedWindow]:
	// a minute, cron's period, so tasks a cron or batch producer enqueues
	// once a minute are seen in every window. (Windows of 90 s and 2 min
	// read per-minute lumps unevenly or lag a ramp: more pod-hours on
	// examples/sim/trace.)
	DefaultSustainedWindow = time.Minute
)

// Observation is one reading of a queue and its workers. Counters are
// cumulative since some start; the estimator works on their changes, so a
// counter that resets (a restarted worker) costs one interval, not a wrong
// rate.
type Observation struct {
	// Backlog is tasks waiting to start.
	Backlog int64
	// InFlight is tasks being served.
	InFlight int64
	// Completed is the cumulative count of finished tasks (HasCompleted).
	Completed    int64
	HasCompleted bool
	// BusySeconds is the cumulative slot-seconds spent serving tasks, as
	// the workers report it (HasBusy).
	BusySeconds float64
	HasBusy     bool
	// Arrived is a cumulative count of enqueued tasks where the broker
	// keeps one, e.g. a Kafka log-end offset (HasArrived). It is preferred
	// over backlog change plus completions.
	Arrived    int64
	HasArrived bool
}

// Estimate is the estimator's current view.
type Estimate struct {
	// ArrivalRate is smoothed tasks per second, at least SustainedRate;
	// NaN when unknown.
	ArrivalRate float64
	// SustainedRate is the lowest arrival rate of the last three windows
	// (see [Estimator.SustainedWindow]); 0 until they are seen.
	SustainedRate float64
	// ServiceTime is the smoothed mean slot time per task; 0 when unknown.
	ServiceTime time.Duration
	// Known is true when both figures are usable and fresh.
	Known bool
}

// Estimator smooths arrival rate and service time from a sequence of
// observations. It reads no clock: every call takes now. The zero value
// uses the defaults.
type Estimator struct {
	// HalfLife of the exponential smoothing; 0 means DefaultHalfLife.
	HalfLife time.Duration
	// StaleAfter bounds the age of the last usable observation; 0 means
	// DefaultStaleAfter.
	StaleAfter time.Duration
	// Growth bounds how much one interval can raise the arrival rate: its
	// rate counts as at most Growth × the estimate plus one task per
	// interval. A one-off burst then lands in the backlog (which the model
	// drains within the target) instead of inflating the rate the pool is
	// sized to keep up with for minutes afterwards, while a real ramp is
	// followed within a few intervals. 0 means DefaultGrowth; negative
	// disables the bound.
	Growth float64
	// SustainedWindow is the window of the sustained rate: the lowest of
	// the arrival rates over the last three consecutive windows ending at
	// the newest observation, unbounded by Growth. The growth bound reads
	// tasks that arrive in periodic lumps (a steady 2/s as 120 once a
	// minute) as a trickle; the sustained rate sees them, while a one-off
	// batch or a short spike, absent from one of the windows, still does
	// not count. [Estimate] reports the larger of the two rates. 0 means
	// DefaultSustainedWindow; negative disables it.
	SustainedWindow time.Duration

	prev     Observation
	prevAt   time.Time
	havePrev bool

	rate, svc         float64
	haveRate, haveSvc bool
	rateAt, svcAt     time.Time

	sus sustained
}

// Observe folds one observation taken at now into the estimate.
// Observations that do not move time forward are ignored.
func (e *Estimator) Observe(now time.Time, o Observation) {
	if !e.havePrev {
		e.prev, e.prevAt, e.havePrev = o, now, true
		return
	}
	dt := now.Sub(e.prevAt).Seconds()
	if !(dt > 0) {
		return
	}
	alpha := 1 - math.Exp2(-dt/e.halfLife().Seconds())
	arrived, ok := arrivals(e.prev, o)
	if ok {
		e.rate = smooth(e.rate, e.bound(arrived/dt, dt), alpha, e.haveRate)
		e.haveRate, e.rateAt = true, now
	}
	if w := e.sustainedWindow(); w > 0 {
		e.sus.add(now, arrived, dt, ok, w)
	}
	if svc, ok := serviceTime(e.prev, o); ok {
		e.svc = smooth(e.svc, svc, alpha, e.haveSvc)
		e.haveSvc, e.svcAt = true, now
	}
	e.prev, e.prevAt = o, now
}

// Estimate is the current view at now; Known is false until both an
// arrival rate and a service time have been seen within StaleAfter.
func (e *Estimator) Estimate(now time.Time) Estimate {
	est := Estimate{ArrivalRate: math.NaN()}
	stale := e.staleAfter()
	if e.haveRate && now.Sub(e.rateAt) <= stale {
		est.ArrivalRate = e.rate
		if w := e.sustainedWindow(); w > 0 {
			est.SustainedRate = e.sus.rate(w)
			est.ArrivalRate = math.Max(est.ArrivalRate, est.SustainedRate)
		}
	}
	if e.haveSvc && now.Sub(e.svcAt) <= stale {
		est.ServiceTime = seconds(e.svc)
	}
	est.Known = !math.IsNaN(est.ArrivalRate) && est.ServiceTime > 0
	return est
}

// Reset forgets everything, e.g. after the source changed.
func (e *Estimator) Reset() {
	*e = Estimator{HalfLife: e.HalfLife, StaleAfter: e.StaleAfter, Growth: e.Growth, SustainedWindow: e.SustainedWindow}
}

func (e *Estimator) sustainedWindow() time.Duration {
	if e.SustainedWindow == 0 {
		return DefaultSustainedWindow
	}
	return e.SustainedWindow
}

// bound applies Growth to one interval's rate.
func (e *Estimator) bound(rate, dt float64) float64 {
	g := e.Growth
	if g == 0 {
		g = DefaultGrowth
	}
	if g < 0 || !e.haveRate {
		return rate
	}
	return math.Min(rate, g*e.rate+1/dt)
}

func (e *Estimator) halfLife() time.Duration {
	if e.HalfLife <= 0 {
		return DefaultHalfLife
	}
	return e.HalfLife
}

func (e *Estimator) staleAfter() time.Duration {
	if e.StaleAfter <= 0 {
		return DefaultStaleAfter
	}
	return e.StaleAfter
}

// arrivals is the number of tasks enqueued between two observations: the
// broker's own counter where it has one, else the change in tasks present
// (waiting + in flight) plus the tasks completed.
func arrivals(a, b Observation) (float64, bool) {
	if a.HasArrived && b.HasArrived {
		d := b.Arrived - a.Arrived
		return float64(d), d >= 0
	}
	if !a.HasCompleted || !b.HasCompleted || b.Completed < a.Completed {
		return 0, false
	}
	present := float64(max(b.Backlog, 0)+max(b.InFlight, 0)) - float64(max(a.Backlog, 0)+max(a.InFlight, 0))
	n := present + float64(b.Completed-a.Completed)
	// Tasks can leave a queue without completing (expired, deleted by
	// hand); never read that as negative arrivals.
	return max(n, 0), true
}

// serviceTime is busy slot-seconds per completed task between two
// observations, when tasks completed and the counters moved forward.
func serviceTime(a, b Observation) (float64, bool) {
	if !a.HasCompleted || !b.HasCompleted || !a.HasBusy || !b.HasBusy {
		return 0, false
	}
	done := b.Completed - a.Completed
	busy := b.BusySeconds - a.BusySeconds
	if done <= 0 || !(busy > 0) || math.IsInf(busy, 0) {
		return 0, false
	}
	return busy / float64(done), true
}

// smooth is one exponential-smoothing step; the first value is taken as is.
func smooth(old, sample, alpha float64, have bool) float64 {
	if !have || math.IsNaN(old) {
		return sample
	}
	return old + alpha*(sample-old)
}
