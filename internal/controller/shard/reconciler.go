package shard

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	crsource "sigs.k8s.io/controller-runtime/pkg/source"
)

// LabelOwner names the replica that serves an object.
const LabelOwner = "shard.swell.dev/owner"

// Membership is what the Reconciler needs of a Ring.
type Membership interface {
	Self() string
	Members() ([]string, bool)
	Alive(id string) bool
	Subscribe() <-chan struct{}
}

// Releaser is implemented by reconcilers that keep per-object state
// (windows, subscriptions, metrics): Release drops it when this replica
// stops serving the object.
type Releaser interface {
	Release(key types.NamespacedName)
}

// Reconciler runs Inner only for the objects this replica owns, and moves
// the owner label as Decide says.
type Reconciler struct {
	// Inner is the kind's reconciler.
	Inner reconcile.Reconciler
	// Client reads the object (from the cache) and patches its label.
	Client client.Client
	// New returns an empty object of the kind.
	New func() client.Object
	// Ring is the membership.
	Ring Membership
	// Settle is how long an object taken from a dead owner waits before
	// the first pass acts, so that the cache has seen what the previous
	// owner wrote (its last pods) before this replica counts them.
	Settle time.Duration
	// Clock is injected for tests; nil uses the real clock.
	Clock clock.PassiveClock

	mu       sync.Mutex
	acquired map[types.NamespacedName]time.Time
	held     map[types.NamespacedName]bool
}

// notReadyRetry is how soon a pass is retried while the ring is not ready.
const notReadyRetry = time.Second

// Reconcile decides ownership and runs Inner when this replica is the owner.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	members, ready := r.Ring.Members()
	if !ready {
		return reconcile.Result{RequeueAfter: notReadyRetry}, nil
	}
	obj := r.New()
	if err := r.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			r.drop(req.NamespacedName)
			return r.Inner.Reconcile(ctx, req)
		}
		return reconcile.Result{}, fmt.Errorf("get for sharding: %w", err)
	}
	self := r.Ring.Self()
	target := Owner(req.String(), members)
	action, to := Decide(self, obj.GetLabels()[LabelOwner], target, r.Ring.Alive)
	switch action {
	case Act:
		if wait := r.settling(req.NamespacedName); wait > 0 {
			return reconcile.Result{RequeueAfter: wait}, nil
		}
		r.hold(req.NamespacedName)
		return r.Inner.Reconcile(ctx, req)
	case Acquire:
		previous := obj.GetLabels()[LabelOwner]
		if err := r.setOwner(ctx, obj, self); err != nil {
			return reconcile.Result{}, err
		}
		if previous == "" {
			// Nobody served it before: nothing to wait for.
			r.hold(req.NamespacedName)
			return r.Inner.Reconcile(ctx, req)
		}
		log.FromContext(ctx).Info("taken over from a replica whose lease expired", "from", previous, "settle", r.Settle)
		r.markAcquired(req.NamespacedName)
		return reconcile.Result{RequeueAfter: r.Settle}, nil
	case HandOver:
		log.FromContext(ctx).Info("handed over", "to", to)
		r.release(req.NamespacedName)
		return reconcile.Result{}, r.setOwner(ctx, obj, to)
	default:
		r.release(req.NamespacedName)
		return reconcile.Result{}, nil
	}
}

// setOwner writes the owner label, failing with a conflict if the object
// changed since it was read, so two replicas never both move it.
func (r *Reconciler) setOwner(ctx context.Context, obj client.Object, owner string) error {
	base := obj.DeepCopyObject().(client.Object)
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelOwner] = owner
	obj.SetLabels(labels)
	if err := r.Client.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("set %s=%s: %w", LabelOwner, owner, err)
	}
	return nil
}

func (r *Reconciler) now() time.Time {
	if r.Clock == nil {
		return time.Now()
	}
	return r.Clock.Now()
}

func (r *Reconciler) markAcquired(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.acquired == nil {
		r.acquired = map[types.NamespacedName]time.Time{}
	}
	r.acquired[key] = r.now()
}

// settling is how much longer a newly acquired object waits.
func (r *Reconciler) settling(key types.NamespacedName) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.acquired[key]
	if !ok {
		return 0
	}
	if wait := r.Settle - r.now().Sub(at); wait > 0 {
		return wait
	}
	delete(r.acquired, key)
	return 0
}

func (r *Reconciler) hold(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held == nil {
		r.held = map[types.NamespacedName]bool{}
	}
	r.held[key] = true
}

// release drops Inner's state of an object this replica no longer serves.
func (r *Reconciler) release(key types.NamespacedName) {
	r.mu.Lock()
	held := r.held[key]
	delete(r.held, key)
	delete(r.acquired, key)
	r.mu.Unlock()
	if rel, ok := r.Inner.(Releaser); ok && held {
		rel.Release(key)
	}
}

// drop forgets a deleted object (Inner forgets its own state).
func (r *Reconciler) drop(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.held, key)
	delete(r.acquired, key)
}

// Source enqueues every object of the kind after each change of the ring's
// members, so that owners hand over and new owners acquire at once rather
// than on each object's next event. list returns the objects' keys (from
// the cache).
func (r *Reconciler) Source(list func(ctx context.Context) ([]types.NamespacedName, error)) crsource.Source {
	changes := r.Ring.Subscribe()
	return crsource.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-changes:
				}
				keys, err := list(ctx)
				for err != nil && ctx.Err() == nil {
					select { // a cache list fails only while it starts
					case <-ctx.Done():
						return
					case <-time.After(notReadyRetry):
					}
					keys, err = list(ctx)
				}
				for _, k := range keys {
					q.Add(reconcile.Request{NamespacedName: k})
				}
			}
		}()
		return nil
	})
}
