package externalscaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// ErrUnavailable marks errors meaning "no trustworthy value": the server
// answers them with gRPC Unavailable so KEDA applies its fallback.
var ErrUnavailable = errors.New("metric unavailable")

// TrackerOptions configure a Tracker; zero fields take defaults.
type TrackerOptions struct {
	// Clock drives polling and idle expiry (default: the real clock).
	Clock clock.WithTicker
	// Interval between polls of one target (default 5s).
	Interval time.Duration
	// PollTimeout bounds one poll (default: Interval, at most 10s).
	PollTimeout time.Duration
	// IdleTimeout stops a watcher nobody asked about for this long and
	// no stream holds (default 10m, the Azul scaler's age-off).
	IdleTimeout time.Duration
	// MaxFailures is how many polls in a row may fail before the cached
	// value is withdrawn (default 3).
	MaxFailures int
	// PushGap is the least time between two polls of one target that push
	// notifications (Redis keyspace events, NATS JetStream) trigger: a
	// busy queue notifies on every message, and polling after each would
	// cost the broker a round trip per message (default 1s; the regular
	// Interval is not affected).
	PushGap time.Duration
	// FirstReadWait bounds how long a request for a new target waits for
	// its first poll (default 5s; the request's deadline also applies).
	FirstReadWait time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Metrics, optional.
	Metrics *Metrics
}

func (o TrackerOptions) withDefaults() TrackerOptions {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.PollTimeout <= 0 {
		o.PollTimeout = min(o.Interval, 10*time.Second)
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 10 * time.Minute
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = 3
	}
	if o.PushGap <= 0 {
		o.PushGap = time.Second
	}
	if o.FirstReadWait <= 0 {
		o.FirstReadWait = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Tracker keeps one watcher per distinct target (Spec.Key), shared by
// every ScaledObject that asks for it, and one broker client per
// connection configuration, shared by every target measured through it.
type Tracker struct {
	o      TrackerOptions
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	conns  *sharedConns

	mu       sync.Mutex
	watchers map[string]*watcher
}

// NewTracker starts an empty tracker; Close stops every watcher.
func NewTracker(o TrackerOptions) *Tracker {
	ctx, cancel := context.WithCancel(context.Background())
	return &Tracker{o: o.withDefaults(), ctx: ctx, cancel: cancel, conns: newSharedConns(), watchers: map[string]*watcher{}}
}

// Connections is the number of broker clients open (or being opened) for
// the tracked targets, one per connection configuration.
func (t *Tracker) Connections() int { return t.conns.len() }

// Close stops every watcher and waits for them.
func (t *Tracker) Close() {
	t.cancel()
	t.wg.Wait()
}

// Len is the number of tracked targets.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.watchers)
}

// acquire returns the spec's watcher, starting it if needed, with one
// reference held until release.
func (t *Tracker) acquire(spec *Spec) (*watcher, func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.watchers[spec.Key]
	if !ok {
		w = newWatcher(t, spec)
		t.watchers[spec.Key] = w
		t.o.Metrics.setTargets(len(t.watchers))
		t.o.Logger.Info("tracking target", "source", spec.Source, "target", spec.Key)
		t.wg.Go(func() { w.run(t.ctx) })
	}
	w.refs++
	w.lastUsed = t.o.Clock.Now()
	return w, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		w.refs--
		w.lastUsed = t.o.Clock.Now()
	}
}

// expire removes w when unused for IdleTimeout; true means it must stop.
func (t *Tracker) expire(w *watcher) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if w.refs > 0 || t.o.Clock.Since(w.lastUsed) < t.o.IdleTimeout {
		return false
	}
	delete(t.watchers, w.spec.Key)
	t.o.Metrics.setTargets(len(t.watchers))
	t.o.Logger.Info("stopped tracking idle target", "source", w.spec.Source, "target", w.spec.Key)
	return true
}

// Read returns the spec's cached reading, waiting for the first poll of a
// new target (bounded by FirstReadWait and ctx).
func (t *Tracker) Read(ctx context.Context, spec *Spec) (Reading, error) {
	w, release := t.acquire(spec)
	defer release()
	if err := w.waitFirst(ctx, t.o.FirstReadWait); err != nil {
		return Reading{}, err
	}
	return w.current()
}

// Subscribe holds the spec's watcher for a stream: changed receives a
// token after every poll; stop releases it.
func (t *Tracker) Subscribe(spec *Spec) (read func() (Reading, error), changed <-chan struct{}, stop func()) {
	w, release := t.acquire(spec)
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	w.subs[ch] = struct{}{}
	done := w.attempted
	w.mu.Unlock()
	select {
	case <-done:
		ch <- struct{}{}
	default:
	}
	return w.current, ch, func() {
		w.mu.Lock()
		delete(w.subs, ch)
		w.mu.Unlock()
		release()
	}
}

// watcher polls one target.
type watcher struct {
	t    *Tracker
	spec *Spec

	// refs and lastUsed are guarded by t.mu.
	refs     int
	lastUsed time.Time

	mu        sync.Mutex
	probe     probe
	reading   Reading
	measured  bool
	lastOK    time.Time
	failures  int
	lastErr   error
	attempted chan struct{}
	subs      map[chan struct{}]struct{}
}

func newWatcher(t *Tracker, spec *Spec) *watcher {
	return &watcher{t: t, spec: spec, attempted: make(chan struct{}), subs: map[chan struct{}]struct{}{}}
}

func (w *watcher) run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer w.closeProbe()
	tick := w.t.o.Clock.NewTicker(w.t.o.Interval)
	defer tick.Stop()
	wake := make(chan struct{}, 1)
	for {
		polled := w.t.o.Clock.Now()
		w.poll(ctx, wake)
		select {
		case <-ctx.Done():
			return
		case <-tick.C():
		case <-wake:
			if !w.pushGap(ctx, polled, tick.C()) {
				return
			}
		}
		if w.t.expire(w) {
			return
		}
	}
}

// pushGap holds a push-triggered poll until PushGap after the last poll
// began (or the next tick); wake-ups meanwhile fold into the one poll that
// follows. False means ctx ended.
func (w *watcher) pushGap(ctx context.Context, polled time.Time, tick <-chan time.Time) bool {
	wait := w.t.o.PushGap - w.t.o.Clock.Since(polled)
	if wait <= 0 {
		return true
	}
	timer := w.t.o.Clock.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C():
	case <-tick:
	}
	return true
}

func (w *watcher) closeProbe() {
	if w.probe != nil {
		_ = w.probe.Close()
	}
}

// poll opens the probe if needed and measures once.
func (w *watcher) poll(parent context.Context, wake chan<- struct{}) {
	ctx, cancel := context.WithTimeout(parent, w.t.o.PollTimeout)
	defer cancel()
	if w.probe == nil {
		p, err := w.spec.target.open(ctx, w.t.conns)
		if err != nil {
			w.record(Reading{}, fmt.Errorf("connect: %w", err))
			return
		}
		w.probe = p
		w.startPush(parent, wake)
	}
	r, err := w.probe.measure(ctx, w.t.o.Clock.Now())
	w.record(r, err)
}

// pushProbe is a probe whose source can notice changes itself.
type pushProbe interface {
	watch(ctx context.Context, wake chan<- struct{}) error
}

func (w *watcher) startPush(ctx context.Context, wake chan<- struct{}) {
	pp, ok := w.probe.(pushProbe)
	if !ok {
		return
	}
	w.t.wg.Go(func() {
		if err := pp.watch(ctx, wake); err != nil && ctx.Err() == nil {
			w.t.o.Logger.Warn("push notifications stopped; polling only", "target", w.spec.Key, "err", err)
		}
	})
}

func (w *watcher) record(r Reading, err error) {
	w.t.o.Metrics.poll(w.spec.Source, err)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.failures++
		w.lastErr = err
		w.t.o.Logger.Warn("poll failed", "source", w.spec.Source, "target", w.spec.Key, "failures", w.failures, "err", err)
	} else {
		w.reading, w.measured, w.lastOK, w.failures, w.lastErr = r, true, r.At, 0, nil
	}
	select {
	case <-w.attempted:
	default:
		close(w.attempted)
	}
	for ch := range w.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (w *watcher) waitFirst(ctx context.Context, limit time.Duration) error {
	timer := w.t.o.Clock.NewTimer(limit)
	defer timer.Stop()
	select {
	case <-w.attempted:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %s not measured yet: %w", ErrUnavailable, w.spec.Source, ctx.Err())
	case <-timer.C():
		return fmt.Errorf("%w: %s not measured yet (first poll still running)", ErrUnavailable, w.spec.Source)
	}
}

// current is the cached reading, or ErrUnavailable when it was never
// measured or the last MaxFailures polls failed.
func (w *watcher) current() (Reading, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case !w.measured && w.lastErr != nil:
		return Reading{}, fmt.Errorf("%w: %s never measured successfully: %w", ErrUnavailable, w.spec.Source, w.lastErr)
	case !w.measured:
		return Reading{}, fmt.Errorf("%w: %s not measured yet", ErrUnavailable, w.spec.Source)
	case w.failures >= w.t.o.MaxFailures:
		return Reading{}, fmt.Errorf("%w: %s: last %d polls failed, last good value is %s old: %w",
			ErrUnavailable, w.spec.Source, w.failures, w.t.o.Clock.Since(w.lastOK).Round(time.Millisecond), w.lastErr)
	}
	return w.reading, nil
}
