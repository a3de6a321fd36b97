package qworker

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/swell-autoscaler/swell/pkg/source"
)

// pushBackoff bounds how often a failing push subscription is retried; the
// poll keeps measuring meanwhile, so push is only ever an accelerator.
const pushBackoff = 10 * time.Second

// watcher is one running push subscription for one QWorker.
type watcher struct {
	src    source.Source
	cancel context.CancelFunc
}

// ensureWatch starts (or restarts, when the source changed) a push
// subscription for key if its source can push. Each wake-up enqueues the
// QWorker, so a new message is seen in well under the poll interval.
func (r *Reconciler) ensureWatch(key types.NamespacedName, qw *QWorker, src source.Source) {
	pusher, ok := src.(source.Pusher)
	if !ok || r.wake == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.watchers == nil {
		r.watchers = map[types.NamespacedName]*watcher{}
	}
	if w := r.watchers[key]; w != nil {
		if w.src == src {
			return
		}
		w.cancel()
	}
	ctx, cancel := context.WithCancel(r.baseCtx)
	r.watchers[key] = &watcher{src: src, cancel: cancel}
	obj := qw.DeepCopy()
	go r.runWatch(ctx, key, obj, pusher)
}

// runWatch keeps the subscription alive until ctx ends.
func (r *Reconciler) runWatch(ctx context.Context, key types.NamespacedName, qw *QWorker, p source.Pusher) {
	logger := log.FromContext(ctx).WithValues("qworker", key)
	wake := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-wake:
				select {
				case r.wake <- event.TypedGenericEvent[*QWorker]{Object: qw}:
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
		case <-time.After(pushBackoff):
		}
	}
}

// stopWatch ends key's subscription (the QWorker is gone).
func (r *Reconciler) stopWatch(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.watchers[key]; w != nil {
		w.cancel()
		delete(r.watchers, key)
	}
}
