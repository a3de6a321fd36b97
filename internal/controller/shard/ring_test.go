package shard

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/swell-autoscaler/swell/internal/testenv"
)

// TestRingAndHandOverOnARealAPIServer runs two rings against a real
// apiserver: both see each other; each object is acted on by the replica
// the hash names, after the other hands it over; a replica that stops
// releases its lease and the survivor acquires its objects.
func TestRingAndHandOverOnARealAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := testenv.New(t, testenv.Options{APIServer: true})
	c, err := client.New(env.RESTConfig, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "default"
	newRing := func(id string) *Ring {
		r, err := NewRing(env.RESTConfig, RingOptions{Namespace: ns, Name: "test", Identity: id,
			LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b := newRing("a"), newRing("b")
	actx, stopA := context.WithCancel(ctx)
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(actx) }()
	go func() { _ = b.Run(ctx) }()
	waitMembers(ctx, t, a, "a", "b")
	waitMembers(ctx, t, b, "a", "b")

	// Ten objects, all first acquired by a (b not yet reconciling).
	var keys []types.NamespacedName
	for i := range 10 {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "obj-" + string(rune('a'+i))}}
		if err := c.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, client.ObjectKeyFromObject(cm))
	}
	clk := clocktesting.NewFakePassiveClock(time.Now())
	ia, ib := &countingInner{}, &countingInner{}
	ra := &Reconciler{Inner: ia, Client: c, New: func() client.Object { return &corev1.ConfigMap{} }, Ring: a, Settle: time.Second, Clock: clk}
	rb := &Reconciler{Inner: ib, Client: c, New: func() client.Object { return &corev1.ConfigMap{} }, Ring: b, Settle: time.Second, Clock: clk}
	pass := func(r *Reconciler, k types.NamespacedName) reconcile.Result {
		t.Helper()
		res, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: k})
		if err != nil {
			t.Fatalf("%s on %s: %v", r.Ring.Self(), k, err)
		}
		return res
	}
	members, _ := a.Members()
	for _, k := range keys {
		// The hashed owner acquires; the other ignores an unowned object.
		owner, other := ra, rb
		if Owner(k.String(), members) == "b" {
			owner, other = rb, ra
		}
		pass(other, k)
		pass(owner, k) // acquires an unowned object and acts at once
		if got := label(ctx, t, c, k); got != owner.Ring.Self() {
			t.Fatalf("%s owned by %q, want %s", k, got, owner.Ring.Self())
		}
		pass(other, k)
	}
	if ia.total()+ib.total() != len(keys) || ia.total() == 0 || ib.total() == 0 {
		t.Fatalf("acted: a %v, b %v; want each key once, shared between both", ia.keys(), ib.keys())
	}

	// a stops: its lease goes, b acquires a's objects after settling and a
	// released its state of each.
	stopA()
	if err := <-aDone; err != nil {
		t.Fatalf("ring a: %v", err)
	}
	waitMembers(ctx, t, b, "b")
	bBefore := ib.total()
	for _, k := range keys {
		res := pass(rb, k)
		if Owner(k.String(), members) == "a" && res.RequeueAfter != time.Second {
			t.Fatalf("%s taken from the dead a: requeue %v, want the settle time", k, res.RequeueAfter)
		}
	}
	if ib.total() != bBefore+len(keys)-len(ia.keys()) {
		t.Fatalf("b acted on %d objects before a's settled, want only its own %d", ib.total()-bBefore, len(keys)-len(ia.keys()))
	}
	clk.SetTime(clk.Now().Add(time.Second))
	for _, k := range keys {
		pass(rb, k)
		if got := label(ctx, t, c, k); got != "b" {
			t.Fatalf("%s owned by %q after a left, want b", k, got)
		}
	}
	if len(ib.keys()) != len(keys) {
		t.Fatalf("b acted on %v, want every key", ib.keys())
	}

	// A live owner hands over: with a back, b hands a's keys to it.
	a2 := newRing("a")
	go func() { _ = a2.Run(ctx) }()
	waitMembers(ctx, t, b, "a", "b")
	handed, want := 0, 0
	for _, k := range keys {
		pass(rb, k)
		if label(ctx, t, c, k) == "a" {
			handed++
		}
		if Owner(k.String(), []string{"a", "b"}) == "a" {
			want++
		}
	}
	if handed != want || want != len(ia.keys()) {
		t.Fatalf("b handed %d keys back to a, want the %d the hash names (a acted on %d before)", handed, want, len(ia.keys()))
	}
	if len(ib.released) != handed {
		t.Errorf("b released its state of %d keys, handed over %d", len(ib.released), handed)
	}
	t.Logf("10 objects: a acted on %d, b on %d; after a left b took all; a back: %d handed to it", len(ia.keys()), len(keys)-len(ia.keys()), handed)
}

func waitMembers(ctx context.Context, t *testing.T, r *Ring, want ...string) {
	t.Helper()
	for {
		got, _ := r.Members()
		if slices.Equal(got, want) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s sees members %v, want %v", r.Self(), got, want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func label(ctx context.Context, t *testing.T, c client.Client, k types.NamespacedName) string {
	t.Helper()
	var cm corev1.ConfigMap
	if err := c.Get(ctx, k, &cm); err != nil {
		t.Fatal(err)
	}
	return cm.Labels[LabelOwner]
}

// countingInner records the keys it is asked to reconcile and release.
type countingInner struct {
	acted    map[types.NamespacedName]int
	released []types.NamespacedName
}

func (c *countingInner) Reconcile(_ context.Context, req reconcile.Request) (reconcile.Result, error) {
	if c.acted == nil {
		c.acted = map[types.NamespacedName]int{}
	}
	c.acted[req.NamespacedName]++
	return reconcile.Result{}, nil
}

func (c *countingInner) Release(k types.NamespacedName) { c.released = append(c.released, k) }

func (c *countingInner) total() (n int) {
	for _, v := range c.acted {
		n += v
	}
	return n
}

func (c *countingInner) keys() []types.NamespacedName {
	var out []types.NamespacedName
	for k := range c.acted {
		out = append(out, k)
	}
	return out
}
