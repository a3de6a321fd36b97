package shard

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

// LabelRing marks the Leases of one ring; its value is the ring's name.
const LabelRing = "swell.dev/shard-ring"

// ErrLapsed is returned by Run when this replica could not renew its lease
// within the renew deadline: the other replicas may have taken its objects,
// and its cache may be stale, so it stops (and is restarted) rather than
// act again on what it remembers.
var ErrLapsed = errors.New("shard lease not renewed within the renew deadline")

// RingOptions configure a Ring.
type RingOptions struct {
	// Namespace holds the ring's Leases (the controller's namespace).
	Namespace string
	// Name names the ring; replicas with the same name share objects.
	Name string
	// Identity names this replica; unique in the ring (the pod's name).
	// Its Lease is named Name-Identity.
	Identity string
	// LeaseDuration is how long after its last renewal a replica still
	// counts as alive; RenewDeadline how long a replica keeps acting
	// without renewing; RetryPeriod how often it renews.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Renewed is told the start time of every successful renewal (a
	// leaderguard.Guard's Renewed).
	Renewed func(time.Time)
	// Clock is injected for tests; nil uses the real clock.
	Clock clock.Clock
	// Logger logs membership changes.
	Logger logr.Logger
}

// Ring keeps this replica's Lease renewed and knows the live members.
type Ring struct {
	o    RingOptions
	kube kubernetes.Interface

	mu      sync.Mutex
	members []string // sorted; nil until the leases are listed
	subs    []chan struct{}
	leases  cache.Indexer
	synced  func() bool
	seen    map[string]observed // by lease name
}

// observed is when this replica saw a lease's last renewal. Liveness
// counts from there, on this replica's clock, as client-go's leader
// election does: replicas' clocks need not agree.
type observed struct {
	resourceVersion string
	at              time.Time
}

// NewRing returns a ring on cfg, which must not be guarded: renewals go out
// while this replica's other writes are refused.
func NewRing(cfg *rest.Config, o RingOptions) (*Ring, error) {
	if o.Namespace == "" || o.Name == "" || o.Identity == "" {
		return nil, fmt.Errorf("shard ring: namespace, name and identity are required")
	}
	if o.LeaseDuration < time.Second || o.LeaseDuration <= o.RenewDeadline || o.RetryPeriod <= 0 || o.RenewDeadline <= o.RetryPeriod {
		return nil, fmt.Errorf("shard ring: want lease duration %s > renew deadline %s > retry period %s > 0", o.LeaseDuration, o.RenewDeadline, o.RetryPeriod)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Renewed == nil {
		o.Renewed = func(time.Time) {}
	}
	lcfg := rest.AddUserAgent(rest.CopyConfig(cfg), "shard-ring")
	lcfg.Timeout = max(min(o.RenewDeadline/2, 2*o.RetryPeriod), time.Second)
	kube, err := kubernetes.NewForConfig(lcfg)
	if err != nil {
		return nil, fmt.Errorf("shard ring client: %w", err)
	}
	return &Ring{o: o, kube: kube}, nil
}

// Self is this replica's identity.
func (r *Ring) Self() string { return r.o.Identity }

// Members returns the live members, sorted, and whether the ring is ready:
// the leases were listed and this replica's own is among the live ones.
func (r *Ring) Members() ([]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, self := slices.BinarySearch(r.members, r.o.Identity)
	return r.members, self
}

// Alive reports whether id is a live member.
func (r *Ring) Alive(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := slices.BinarySearch(r.members, id)
	return ok
}

// Subscribe returns a channel that receives (coalesced) after every change
// of the members.
func (r *Ring) Subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	r.mu.Lock()
	r.subs = append(r.subs, ch)
	r.mu.Unlock()
	return ch
}

// Run renews this replica's lease and follows the ring's leases until ctx
// ends (then it deletes its lease, so the others take its objects at once)
// or until a renewal is overdue by the renew deadline (ErrLapsed).
func (r *Ring) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(r.kube, 0,
		informers.WithNamespace(r.o.Namespace),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.LabelSelector = labels.Set{LabelRing: r.o.Name}.String()
		}))
	inf := factory.Coordination().V1().Leases().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.refresh() },
		UpdateFunc: func(any, any) { r.refresh() },
		DeleteFunc: func(any) { r.refresh() },
	}); err != nil {
		return fmt.Errorf("shard ring: watch leases: %w", err)
	}
	r.leases, r.synced = inf.GetIndexer(), inf.HasSynced
	informerCtx, stopInformer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopInformer()
	factory.Start(informerCtx.Done())

	lastRenewal := r.o.Clock.Now()
	for {
		began := r.o.Clock.Now()
		if err := r.renew(ctx, began); err != nil {
			if ctx.Err() == nil {
				r.o.Logger.Info("shard lease renewal failed", "err", err.Error())
			}
		} else {
			lastRenewal = began
			r.o.Renewed(began)
		}
		r.refresh()
		if r.o.Clock.Since(lastRenewal) >= r.o.RenewDeadline {
			return fmt.Errorf("%w (last renewal %s ago)", ErrLapsed, r.o.Clock.Since(lastRenewal).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			r.release()
			return nil
		case <-r.o.Clock.After(r.o.RetryPeriod):
		}
	}
}

// leaseName is the Lease of member id.
func (r *Ring) leaseName(id string) string { return r.o.Name + "-" + id }

// renew creates or renews this replica's lease.
func (r *Ring) renew(ctx context.Context, now time.Time) error {
	leases := r.kube.CoordinationV1().Leases(r.o.Namespace)
	rctx, cancel := context.WithTimeout(ctx, r.o.RenewDeadline/2)
	defer cancel()
	l, err := leases.Get(rctx, r.leaseName(r.o.Identity), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(rctx, r.newLease(now), metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.HolderIdentity = ptr.To(r.o.Identity)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(r.o.LeaseDuration.Seconds()))
	l.Spec.RenewTime = &metav1.MicroTime{Time: now}
	_, err = leases.Update(rctx, l, metav1.UpdateOptions{})
	return err
}

func (r *Ring) newLease(now time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: r.leaseName(r.o.Identity), Namespace: r.o.Namespace, Labels: map[string]string{LabelRing: r.o.Name}},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(r.o.Identity),
			LeaseDurationSeconds: ptr.To(int32(r.o.LeaseDuration.Seconds())),
			AcquireTime:          &metav1.MicroTime{Time: now},
			RenewTime:            &metav1.MicroTime{Time: now},
		},
	}
}

// release deletes this replica's lease on a clean stop.
func (r *Ring) release() {
	ctx, cancel := context.WithTimeout(context.Background(), r.o.RetryPeriod)
	defer cancel()
	err := r.kube.CoordinationV1().Leases(r.o.Namespace).Delete(ctx, r.leaseName(r.o.Identity), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		r.o.Logger.Info("could not release the shard lease; the others take over when it expires", "err", err.Error())
	}
}

// refresh recomputes the live members from the cached leases and tells
// the subscribers when they changed.
func (r *Ring) refresh() {
	// Until the first list is complete a live owner may be missing from
	// the members, and its objects would look free to take.
	if r.leases == nil || !r.synced() {
		return
	}
	now := r.o.Clock.Now()
	var live []string
	r.mu.Lock()
	if r.seen == nil {
		r.seen = map[string]observed{}
	}
	present := map[string]bool{}
	for _, obj := range r.leases.List() {
		l, ok := obj.(*coordinationv1.Lease)
		if !ok {
			continue
		}
		present[l.Name] = true
		o, ok := r.seen[l.Name]
		if !ok || o.resourceVersion != l.ResourceVersion {
			o = observed{resourceVersion: l.ResourceVersion, at: now}
			r.seen[l.Name] = o
		}
		if id, ok := LiveMember(l, r.o.Name, o.at, now); ok {
			live = append(live, id)
		}
	}
	for name := range r.seen {
		if !present[name] {
			delete(r.seen, name)
		}
	}
	r.mu.Unlock()
	slices.Sort(live)
	if live == nil {
		live = []string{}
	}
	r.mu.Lock()
	changed := r.members == nil || !slices.Equal(r.members, live)
	r.members = live
	subs := r.subs
	r.mu.Unlock()
	if !changed {
		return
	}
	r.o.Logger.Info("shard ring members", "members", live)
	for _, ch := range subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// LiveMember returns the member a ring lease names and whether it is
// alive at now, its last renewal having been observed at renewed.
func LiveMember(l *coordinationv1.Lease, ring string, renewed, now time.Time) (string, bool) {
	s := l.Spec
	if s.HolderIdentity == nil || *s.HolderIdentity == "" || s.LeaseDurationSeconds == nil {
		return "", false
	}
	if l.Name != ring+"-"+*s.HolderIdentity {
		return "", false
	}
	expires := renewed.Add(time.Duration(*s.LeaseDurationSeconds) * time.Second)
	return *s.HolderIdentity, now.Before(expires)
}
