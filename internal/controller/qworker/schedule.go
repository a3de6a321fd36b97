package qworker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/swell-autoscaler/swell/pkg/source"
)

// When Swell measures a QWorker's queue.
//
// Measuring is a per-QWorker schedule, apart from reconciling: a reconcile
// runs on every pod event, spec change and wake-up, but it measures only
// when the schedule says so and otherwise acts on the last measurement. The
// schedule measures
//   - once per polling interval (trigger "poll");
//   - anew when the queue, the ScalerConfig or the retirement mode changes
//     (trigger "spec");
//   - early on a push wake-up (trigger "push"), only while the pool sits at
//     zero or the last measurement grew the pool (the backlog jumped), and
//     never while the source is failing;
//
// and never twice within minMeasureGap. The broker is called on a goroutine
// of its own, bounded by measureTimeout (the dial included); a reconcile
// waits for it at most measureWait (not at all when the ScalerConfig's last
// broker call failed) and otherwise returns, the result waking the QWorker
// again when it arrives. A slow or dead broker therefore never
// holds a reconcile worker longer than measureWait.
const (
	// minMeasureGap is the least time between two measurements of one QWorker.
	minMeasureGap = 250 * time.Millisecond
	// measureWait is how long a reconcile waits for a measurement it started.
	measureWait = 250 * time.Millisecond
	// minRequeue is the least delay of the pass a reconcile asks for; the
	// schedule's own wait is normally longer.
	minRequeue = 20 * time.Millisecond
	// backoffBase is the first back-off of a ScalerConfig whose broker failed.
	backoffBase = time.Second
	// backoffIntervals caps a ScalerConfig's back-off at this many polling
	// intervals.
	backoffIntervals = 4
)

// Measurement triggers, the trigger label of swell_qworker_measurements_total.
const (
	triggerPoll = "poll"
	triggerPush = "push"
	triggerSpec = "spec"
)

// measurement is one finished measurement.
type measurement struct {
	at      time.Time
	sample  source.Sample
	err     error
	trigger string
}

// measureSchedule is one QWorker's measuring state. Its own mutex guards it:
// push wake-ups and measuring goroutines touch it besides the reconcile.
type measureSchedule struct {
	mu sync.Mutex
	// started is when the last measurement began; zero before the first.
	started time.Time
	// sourceKey names what is measured; a change measures anew.
	sourceKey string
	// inflight is set while a measurement runs; done closes when it ends.
	inflight bool
	done     chan struct{}
	// waiting: the reconcile that started the measurement still waits for
	// it and acts on it itself (no wake-up needed).
	waiting bool
	// result is a finished measurement no decision has used yet.
	result *measurement
	// failing: the last measurement failed (push wake-ups are ignored).
	failing bool
	// pushPending: a wake-up arrived that may measure early.
	pushPending bool
	// pushAllowed: the pool is at zero or the last decision grew it.
	pushAllowed bool
	// last is the last decision, acted on between measurements, and the
	// generation and sample it was made with.
	last       *decision
	lastGen    int64
	lastSample source.Sample
	// settled: the last pass left the QWorker settled (settledPool), so
	// the poller measures it and an unchanged sample wakes nothing.
	settled bool
}

// due reports whether a measurement should start now and with which
// trigger, or else how long until the next one is due.
func (s *measureSchedule) due(now time.Time, interval time.Duration, sourceKey string) (trigger string, wait time.Duration) {
	if s.inflight {
		return "", interval
	}
	since := now.Sub(s.started)
	switch {
	case s.started.IsZero() || s.sourceKey != sourceKey:
		return triggerSpec, 0
	case since < minMeasureGap:
		return "", minMeasureGap - since
	case since >= interval:
		return triggerPoll, 0
	case s.pushPending && s.pushAllowed && !s.failing:
		return triggerPush, 0
	}
	return "", interval - since
}

// begin marks a measurement of sourceKey started at now and returns the
// channel its end closes; waiting says the reconcile that started it waits
// for it. The caller holds s.mu.
func (s *measureSchedule) begin(now time.Time, sourceKey string, waiting bool) chan struct{} {
	s.started, s.sourceKey, s.inflight, s.pushPending, s.waiting = now, sourceKey, true, false, waiting
	s.done = make(chan struct{})
	return s.done
}

// wake records a push wake-up and reports whether it is worth a reconcile.
func (s *measureSchedule) wake() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.pushAllowed || s.failing {
		return false
	}
	s.pushPending = true
	return true
}

// take returns the finished measurement no decision has used yet.
func (s *measureSchedule) take() *measurement {
	m := s.result
	s.result = nil
	return m
}

// schedules holds the measuring state of every QWorker, the per-ScalerConfig
// back-off, and the channel on which finished measurements wake QWorkers.
type schedules struct {
	mu       sync.Mutex
	byWorker map[types.NamespacedName]*measureSchedule
	backoffs map[types.NamespacedName]*brokerBackoff
	// wakeups carries finished measurements to the controller's queue; nil
	// in unit tests without a manager.
	wakeups chan event.TypedGenericEvent[*QWorker]
	// polls are the settled QWorkers the poller measures (poller.go).
	polls *pollQueue
}

func newSchedules() *schedules {
	return &schedules{
		byWorker: map[types.NamespacedName]*measureSchedule{},
		backoffs: map[types.NamespacedName]*brokerBackoff{},
		wakeups:  make(chan event.TypedGenericEvent[*QWorker], 1024),
		polls:    newPollQueue(),
	}
}

// lookup returns key's schedule, or nil when it has none (forgotten).
func (ss *schedules) lookup(key types.NamespacedName) *measureSchedule {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.byWorker[key]
}

func (ss *schedules) get(key types.NamespacedName) *measureSchedule {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.byWorker == nil {
		ss.byWorker = map[types.NamespacedName]*measureSchedule{}
	}
	s := ss.byWorker[key]
	if s == nil {
		s = &measureSchedule{}
		ss.byWorker[key] = s
	}
	return s
}

func (ss *schedules) forget(key types.NamespacedName) {
	ss.mu.Lock()
	delete(ss.byWorker, key)
	ss.mu.Unlock()
	ss.polls.remove(key)
}

// isSettled reports whether key is left to the poller.
func (ss *schedules) isSettled(key types.NamespacedName) bool {
	s := ss.lookup(key)
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settled
}

// unsettle takes key back from the poller: the reconcile measures it (or,
// paused, nobody does).
func (ss *schedules) unsettle(key types.NamespacedName) {
	if s := ss.lookup(key); s != nil {
		s.mu.Lock()
		s.settled = false
		s.mu.Unlock()
	}
	ss.polls.remove(key)
}

// settle hands key, which the pass just made left settled, to the poller
// from its next due poll on.
func (ss *schedules) settle(key types.NamespacedName, spec workerSpec, qw *QWorker) {
	s := ss.get(key)
	s.mu.Lock()
	s.settled = true
	due := s.started.Add(spec.PollingInterval)
	s.mu.Unlock()
	ss.polls.schedule(key, due, spec, qw, nil)
}

// gate is the push wake-up filter (pushwake.Gate).
func (ss *schedules) gate(key types.NamespacedName) bool {
	return ss.get(key).wake()
}

// backoff returns the back-off of a ScalerConfig.
func (ss *schedules) backoff(key types.NamespacedName) *brokerBackoff {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.backoffs == nil {
		ss.backoffs = map[types.NamespacedName]*brokerBackoff{}
	}
	b := ss.backoffs[key]
	if b == nil {
		b = &brokerBackoff{}
		ss.backoffs[key] = b
	}
	return b
}

// wakeupWait bounds how long a measuring goroutine waits for room in a
// full wake-up channel. A settled QWorker's next reconcile may be
// settledResync away, so its wake-up must not be dropped lightly.
const wakeupWait = 10 * time.Second

// wakeup enqueues qw, waiting up to wakeupWait for room (it runs on the
// measuring goroutine, never on a reconcile worker).
func (ss *schedules) wakeup(qw *QWorker) {
	if ss.wakeups == nil {
		return
	}
	ev := event.TypedGenericEvent[*QWorker]{Object: qw}
	select {
	case ss.wakeups <- ev:
		return
	default:
	}
	timer := time.NewTimer(wakeupWait)
	defer timer.Stop()
	select {
	case ss.wakeups <- ev:
	case <-timer.C:
	}
}

// brokerBackoff spaces out the calls to a ScalerConfig's broker after it
// failed, so QWorkers on a dead broker do not keep dialling it: while it
// backs off, their measurements fail at once with the last error.
type brokerBackoff struct {
	mu       sync.Mutex
	failures int
	until    time.Time
	lastErr  error
}

// errBackingOff marks a measurement skipped because its broker backs off.
var errBackingOff = errors.New("broker backing off after failures")

// check returns an error while the broker backs off.
func (b *brokerBackoff) check(now time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures == 0 || !now.Before(b.until) {
		return nil
	}
	return fmt.Errorf("%w: %w", errBackingOff, b.lastErr)
}

// record notes the outcome of a broker call: a success resets the back-off,
// a failure doubles it from backoffBase up to backoffIntervals × interval.
func (b *brokerBackoff) record(now time.Time, interval time.Duration, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		b.failures, b.until, b.lastErr = 0, time.Time{}, nil
		return
	}
	if errors.Is(err, errBackingOff) {
		return
	}
	b.failures++
	b.lastErr = err
	b.until = now.Add(brokerBackoffDelay(b.failures, interval))
}

// brokerBackoffDelay is the back-off after n consecutive failures.
func brokerBackoffDelay(n int, interval time.Duration) time.Duration {
	limit := max(backoffIntervals*interval, backoffBase)
	d := backoffBase
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// sourceKeyOf names what a QWorker measures: a change measures anew.
func sourceKeyOf(spec workerSpec) string {
	return spec.ScalerConfig + "\x00" + spec.Queue + "\x00" + string(spec.Retirement)
}

// nextMeasurement returns a finished measurement for this pass, if any:
// one that finished since the last pass, or one started now that finished
// within measureWait. wait is when the schedule next needs a pass.
func (r *Reconciler) nextMeasurement(ctx context.Context, spec workerSpec, qw *QWorker) (m *measurement, wait time.Duration) {
	s := r.scheds().get(spec.Key)
	s.mu.Lock()
	if m := s.take(); m != nil {
		_, wait = s.due(r.Clock.Now(), spec.PollingInterval, sourceKeyOf(spec))
		s.mu.Unlock()
		return m, wait
	}
	now := r.Clock.Now()
	trigger, wait := s.due(now, spec.PollingInterval, sourceKeyOf(spec))
	if trigger == "" {
		s.mu.Unlock()
		return nil, wait
	}
	done := s.begin(now, sourceKeyOf(spec), true)
	s.mu.Unlock()
	r.Metrics.measured(spec.Key, trigger)

	go r.runMeasurement(ctx, spec, qw.DeepCopy(), s, trigger, done, nil)
	wait = measureWait
	if r.scheds().backoff(scalerConfigKey(spec)).failingNow() {
		// A broker that failed last time may hang again: do not hold a
		// reconcile worker for it at all.
		wait = 0
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// From here a result that arrives wakes the QWorker itself.
	s.waiting = false
	m = s.take()
	_, wait = s.due(r.Clock.Now(), spec.PollingInterval, sourceKeyOf(spec))
	return m, wait
}

// runMeasurement measures once, bounded by measureTimeout, stores the
// result and wakes the QWorker.
func (r *Reconciler) runMeasurement(ctx context.Context, spec workerSpec, qw *QWorker, s *measureSchedule, trigger string, done chan struct{}, cached source.Source) {
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), measureTimeout)
	defer cancel()
	b := r.scheds().backoff(scalerConfigKey(spec))
	var sample source.Sample
	var src source.Source
	err := b.check(r.Clock.Now())
	if err == nil {
		sample, src, err = r.measureWith(mctx, spec, qw, cached)
		b.record(r.Clock.Now(), spec.PollingInterval, err)
	}
	s.mu.Lock()
	s.inflight, s.failing = false, err != nil
	waiting := s.waiting
	// A poll of a settled QWorker that found the same idle queue changes
	// nothing a reconcile would do: poll again, wake nobody.
	quiet := !waiting && s.settled && err == nil && sameSample(s.lastSample, sample)
	if quiet {
		next := s.started.Add(spec.PollingInterval)
		s.mu.Unlock()
		close(done)
		r.scheds().polls.schedule(spec.Key, next, spec, qw, src)
		return
	}
	s.result = &measurement{at: r.Clock.Now(), sample: sample, err: err, trigger: trigger}
	s.settled = false
	s.mu.Unlock()
	close(done)
	if !waiting {
		// The reconcile that started it stopped waiting: wake the QWorker
		// so the result is acted on now, not at the next poll.
		r.scheds().wakeup(qw)
	}
}

// remember stores the decision acted on until the next measurement, and
// whether push wake-ups may measure early: only while the pool is at zero
// or the decision grew it.
func (s *measureSchedule) remember(d decision, gen int64, sample source.Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := d
	s.last, s.lastGen, s.lastSample = &c, gen, sample
	s.pushAllowed = d.Desired == 0 || d.Desired > d.Previous
}

// lastDecision is the decision to act on when this pass measured nothing:
// the last one, unchanged (Previous = Desired, so no event repeats it).
// ok is false before the first decision; regen is true when the spec's
// generation changed since, and the last measurement succeeded, so the
// caller decides again on the last sample.
func (s *measureSchedule) lastDecision(gen int64) (d decision, sample source.Sample, ok, regen bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		return decision{}, source.Sample{}, false, false
	}
	d = *s.last
	d.Previous = d.Desired
	return d, s.lastSample, true, gen != s.lastGen && d.MeasureErr == nil
}

// decidePass is this pass's decision: a new one when a measurement
// finished (or the spec changed since the last decision), else the last
// one. ok is false until the first measurement finished; fresh is true when
// the decision is new (events and error metrics follow only then). wait is
// when the schedule next needs a pass.
func (r *Reconciler) decidePass(ctx context.Context, spec workerSpec, qw *QWorker, st *workerState, now time.Time, active int32) (d decision, ok, fresh bool, wait time.Duration) {
	s := r.scheds().get(spec.Key)
	m, wait := r.nextMeasurement(ctx, spec, qw)
	var sample source.Sample
	switch {
	case m != nil:
		sample = m.sample
		d = st.decide(now, spec, active, m.sample, m.err)
	default:
		last, lastSample, had, regen := s.lastDecision(qw.Generation)
		if !had {
			return decision{}, false, false, wait
		}
		if !regen {
			return last, true, false, wait
		}
		sample = lastSample
		d = st.decide(now, spec, active, lastSample, nil)
	}
	s.remember(d, qw.Generation, sample)
	return d, true, true, wait
}

// scheds returns the schedules, made on first use for reconcilers built
// without Setup (unit tests).
func (r *Reconciler) scheds() *schedules {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sched == nil {
		r.sched = newSchedules()
		r.sched.wakeups = nil
	}
	return r.sched
}

// scalerConfigKey names the ScalerConfig a QWorker measures through.
func scalerConfigKey(spec workerSpec) types.NamespacedName {
	return types.NamespacedName{Namespace: spec.Key.Namespace, Name: spec.ScalerConfig}
}

// failingNow reports whether the broker's last call failed.
func (b *brokerBackoff) failingNow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failures > 0
}
