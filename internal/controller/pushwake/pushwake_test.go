package pushwake

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/swell-autoscaler/swell/pkg/source"
)

// pusher is a source whose Watch hands its wake channel to the test and
// returns err (after ctx ends when err is nil).
type pusher struct {
	err     error
	calls   atomic.Int32
	mu      sync.Mutex
	wake    chan<- struct{}
	started chan struct{}
	ended   chan struct{}
}

func newPusher(err error) *pusher {
	return &pusher{err: err, started: make(chan struct{}, 16), ended: make(chan struct{}, 16)}
}

func (p *pusher) Measure(context.Context) (source.Sample, error) { return source.Sample{}, nil }
func (p *pusher) Close() error                                   { return nil }

func (p *pusher) Watch(ctx context.Context, wake chan<- struct{}) error {
	p.calls.Add(1)
	p.mu.Lock()
	p.wake = wake
	p.mu.Unlock()
	signal(p.started)
	defer signal(p.ended)
	if p.err != nil {
		return p.err
	}
	<-ctx.Done()
	return nil
}

// signal notes an event for the test without ever blocking the subscription.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// push sends one wake-up the way a source does: without blocking.
func (p *pusher) push() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// poller is a source that cannot push.
type poller struct{}

func (poller) Measure(context.Context) (source.Sample, error) { return source.Sample{}, nil }
func (poller) Close() error                                   { return nil }

var key = types.NamespacedName{Namespace: "ns", Name: "worker"}

func pod() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
}

func waitOn(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestWakeUpEnqueuesTheObject(t *testing.T) {
	w := New[*corev1.Pod](t.Context(), Options{})
	p := newPusher(nil)
	obj := pod()
	w.Ensure(key, obj, p)
	waitOn(t, p.started, "the subscription")
	obj.Name = "changed after Ensure"
	p.push()
	select {
	case ev := <-w.events:
		if ev.Object.Name != key.Name || ev.Object.Namespace != key.Namespace {
			t.Fatalf("event for %s/%s, want %s (a copy taken at Ensure)", ev.Object.Namespace, ev.Object.Name, key)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event after a wake-up")
	}
}

func TestEnsureKeepsRestartsAndStops(t *testing.T) {
	w := New[*corev1.Pod](t.Context(), Options{})
	a, b := newPusher(nil), newPusher(nil)

	w.Ensure(key, pod(), a)
	waitOn(t, a.started, "the first subscription")
	w.Ensure(key, pod(), a)
	if src, ok := w.Watching(key); !ok || src != a || a.calls.Load() != 1 {
		t.Fatalf("same source again: watching %v %v after %d Watch calls, want the one subscription kept", src, ok, a.calls.Load())
	}

	w.Ensure(key, pod(), b)
	waitOn(t, a.ended, "the old subscription to end when the source changed")
	waitOn(t, b.started, "the new subscription")
	if src, _ := w.Watching(key); src != b {
		t.Fatalf("watching %v after the source changed, want the new one", src)
	}

	w.Ensure(key, pod(), poller{})
	if src, _ := w.Watching(key); src != b {
		t.Fatal("a source that cannot push replaced the running subscription")
	}

	w.Stop(key)
	waitOn(t, b.ended, "the subscription to end on Stop")
	if _, ok := w.Watching(key); ok {
		t.Fatal("still watching after Stop")
	}
	w.Stop(key) // idempotent
}

func TestSourceThatCannotPushIsNotWatched(t *testing.T) {
	w := New[*corev1.Pod](t.Context(), Options{})
	w.Ensure(key, pod(), poller{})
	if _, ok := w.Watching(key); ok {
		t.Fatal("watching a source without push")
	}
}

func TestFailedSubscriptionIsRetried(t *testing.T) {
	w := New[*corev1.Pod](t.Context(), Options{Backoff: time.Millisecond})
	p := newPusher(errors.New("notifications are off"))
	w.Ensure(key, pod(), p)
	for range 3 {
		waitOn(t, p.started, "a retry")
	}
	w.Stop(key)
}

func TestContextEndStopsSubscriptions(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	w := New[*corev1.Pod](ctx, Options{})
	p := newPusher(nil)
	w.Ensure(key, pod(), p)
	waitOn(t, p.started, "the subscription")
	cancel()
	waitOn(t, p.ended, "the subscription to end with the context")
}

func TestGateFiltersWakeUps(t *testing.T) {
	cases := []struct {
		name  string
		gate  Gate
		event bool
	}{
		{"no gate", nil, true},
		{"gate allows", func(types.NamespacedName) bool { return true }, true},
		{"gate refuses", func(types.NamespacedName) bool { return false }, false},
		{"gate refuses another key only", func(k types.NamespacedName) bool { return k == key }, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := New[*corev1.Pod](t.Context(), Options{Gate: c.gate})
			p := newPusher(nil)
			w.Ensure(key, pod(), p)
			waitOn(t, p.started, "the subscription")
			p.push()
			wait := 5 * time.Second
			if !c.event {
				wait = 200 * time.Millisecond // proving absence: a short look
			}
			select {
			case <-w.events:
				if !c.event {
					t.Fatal("a refused wake-up was enqueued")
				}
			case <-time.After(wait):
				if c.event {
					t.Fatal("no event after an allowed wake-up")
				}
			}
		})
	}
}

func TestNilWatchersDoNothing(t *testing.T) {
	var w *Watchers[*corev1.Pod]
	w.Ensure(key, pod(), newPusher(nil))
	w.Stop(key)
	if _, ok := w.Watching(key); ok {
		t.Fatal("nil Watchers watching")
	}
}
