// Package pushwake turns the push notifications of queue sources into
// reconcile requests, so a controller that polls a queue every interval
// also reacts to a new message at once.
//
// A source that implements pkg/source.Pusher (Redis keyspace notifications,
// NATS JetStream) can say "the backlog may have changed" the moment it
// does. Watchers keeps one such subscription per reconciled object, started
// by the reconciler the first time it measures the object's source,
// restarted when the source changes (a new queue, ScalerConfig or
// connection) and stopped when the object is deleted or stops using a
// source. Every wake-up becomes a generic event for the object on a
// channel the controller watches (Watchers.Source), so the reconcile runs
// in the controller's own queue: wake-ups coalesce with each other and with
// the poll, and never run concurrently with another reconcile of the same
// object.
//
// Push is only an accelerator: a subscription that fails is retried after
// a back-off while the controller keeps polling, and a wake-up carries no
// data, so a lost one only costs latency. The QWorker and PodAutoscaler
// controllers share this one implementation so that both subscribe, retry
// and clean up the same way.
package pushwake

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	crsource "sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/swell-autoscaler/swell/pkg/source"
)

// Defaults for Options left zero.
const (
	// DefaultBackoff bounds how often a failing subscription is retried;
	// the poll keeps measuring meanwhile, so a slow retry costs latency
	// only, while a fast one would hammer a broker that refuses it.
	DefaultBackoff = 10 * time.Second
	// DefaultBuffer is how many wake-ups may wait for the controller to
	// take them before a subscription's forwarder blocks; the controller's
	// queue deduplicates them, so this only absorbs bursts.
	DefaultBuffer = 256
)

// Gate decides at each wake-up whether it becomes a reconcile request for
// key. A controller whose passes must keep their interval (the
// PodAutoscaler) uses it to let through only the wake-ups worth an early
// pass; a refused wake-up is dropped and the next poll sees the change.
// It runs on the subscription's goroutine, concurrently with reconciles,
// so it must be safe for concurrent use and quick.
type Gate func(key types.NamespacedName) bool

// Options configure Watchers; the zero value is ready to use.
type Options struct {
	// Kind names the object in log lines ("qworker"); "object" when empty.
	Kind string
	// Gate filters wake-ups; nil lets every one through.
	Gate Gate
	// Backoff defaults to DefaultBackoff.
	Backoff time.Duration
	// Buffer defaults to DefaultBuffer.
	Buffer int
}

// Watchers holds the running push subscriptions of one controller, keyed by
// object, and the channel their wake-ups travel on. T is the reconciled
// kind (e.g. *qv1.QWorker). A nil *Watchers does nothing, so reconcilers
// built without a manager (unit tests) need no push plumbing.
type Watchers[T client.Object] struct {
	ctx     context.Context
	events  chan event.TypedGenericEvent[T]
	kind    string
	gate    Gate
	backoff time.Duration

	mu      sync.Mutex
	running map[types.NamespacedName]*watch
}

// watch is one running subscription.
type watch struct {
	src    source.Source
	cancel context.CancelFunc
}

// New returns Watchers whose subscriptions all end when ctx ends (the
// manager's context, so they stop with the controller).
func New[T client.Object](ctx context.Context, o Options) *Watchers[T] {
	if o.Backoff <= 0 {
		o.Backoff = DefaultBackoff
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	if o.Kind == "" {
		o.Kind = "object"
	}
	return &Watchers[T]{
		ctx:     ctx,
		events:  make(chan event.TypedGenericEvent[T], o.Buffer),
		kind:    o.Kind,
		gate:    o.Gate,
		backoff: o.Backoff,
		running: map[types.NamespacedName]*watch{},
	}
}

// Source is the controller-runtime source delivering the wake-ups as
// reconcile requests for their object; pass it to the builder's
// WatchesRawSource once.
func (w *Watchers[T]) Source() crsource.Source {
	return crsource.Channel(w.events, &handler.TypedEnqueueRequestForObject[T]{})
}

// Ensure makes sure key has a subscription to src when src can push: it
// starts one, keeps a running one to the same source, or replaces one to
// another source (the object now measures something else). obj names the
// object the wake-ups enqueue; it is copied. A source that cannot push is
// ignored and leaves any running subscription alone, as a source that
// could not be obtained should be by callers: the next successful measure
// decides.
func (w *Watchers[T]) Ensure(key types.NamespacedName, obj T, src source.Source) {
	pusher, ok := src.(source.Pusher)
	if w == nil || !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if cur := w.running[key]; cur != nil {
		if cur.src == src {
			return
		}
		cur.cancel()
	}
	ctx, cancel := context.WithCancel(w.ctx)
	w.running[key] = &watch{src: src, cancel: cancel}
	copied, _ := obj.DeepCopyObject().(T)
	go w.run(ctx, key, copied, pusher)
}

// Stop ends key's subscription, if any: the object is gone or no longer
// measures a source.
func (w *Watchers[T]) Stop(key types.NamespacedName) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if cur := w.running[key]; cur != nil {
		cur.cancel()
		delete(w.running, key)
	}
}

// Watching reports whether key has a subscription, and to which source;
// for reconcilers' tests and debugging.
func (w *Watchers[T]) Watching(key types.NamespacedName) (source.Source, bool) {
	if w == nil {
		return nil, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := w.running[key]
	if cur == nil {
		return nil, false
	}
	return cur.src, true
}

// run keeps the subscription alive until ctx ends, forwarding each wake-up
// the gate lets through as an event for obj.
func (w *Watchers[T]) run(ctx context.Context, key types.NamespacedName, obj T, p source.Pusher) {
	logger := log.FromContext(ctx).WithValues(w.kind, key)
	wake := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-wake:
				if w.gate != nil && !w.gate(key) {
					continue
				}
				select {
				case w.events <- event.TypedGenericEvent[T]{Object: obj}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	for ctx.Err() == nil {
		if err := p.Watch(ctx, wake); err != nil && ctx.Err() == nil {
			logger.V(1).Info("push subscription failed; polling continues", "err", err.Error())
		}
		select {
		case <-ctx.Done():
		case <-time.After(w.backoff):
		}
	}
}
