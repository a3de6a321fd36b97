package qworker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
)

// statusFixture is a fake API server holding one QWorker, counting status
// patches and failing them while fail is set.
type statusFixture struct {
	c       client.Client
	qw      *QWorker
	clk     *clocktesting.FakePassiveClock
	mu      sync.Mutex
	patches int
	fail    error
	// hold, when set, is closed to let a patch through; each patch first
	// says on started that it is waiting.
	hold    chan struct{}
	started chan struct{}
}

func newStatusFixture(t *testing.T) *statusFixture {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := qv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	f := &statusFixture{
		qw:  &QWorker{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "w"}},
		clk: clocktesting.NewFakePassiveClock(t0),
	}
	f.c = fake.NewClientBuilder().WithScheme(scheme).WithObjects(f.qw.DeepCopy()).WithStatusSubresource(&QWorker{}).
		WithInterceptorFuncs(interceptor.Funcs{
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				f.mu.Lock()
				f.patches++
				err, hold, started := f.fail, f.hold, f.started
				f.mu.Unlock()
				if hold != nil {
					started <- struct{}{}
					<-hold
				}
				if err != nil {
					return err
				}
				return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
			},
		}).Build()
	return f
}

func (f *statusFixture) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.patches
}

// server is the QWorker's status as the API server has it.
func (f *statusFixture) server(t *testing.T) qv1.QWorkerStatus {
	t.Helper()
	got := &QWorker{}
	if err := f.c.Get(context.Background(), client.ObjectKeyFromObject(f.qw), got); err != nil {
		t.Fatal(err)
	}
	return got.Status
}

func backlogStatus(n int64) qv1.QWorkerStatus {
	return qv1.QWorkerStatus{Backlog: ptr.To(n), CurrentReplicas: int32(n)}
}

// TestStatusWriterCoalescesAndOverlays walks one QWorker through what the
// writer promises: passes that ask for three statuses before the writer
// gets to them cost one patch carrying the newest; until the cache shows a
// status the reconcile reads it from the overlay (so asking again costs
// nothing); once the cache shows it the overlay is dropped; a status equal
// to the cache's is never written.
func TestStatusWriterCoalescesAndOverlays(t *testing.T) {
	ctx := context.Background()
	f := newStatusFixture(t)
	w := newStatusWriter(f.c, f.clk)
	key := client.ObjectKeyFromObject(f.qw)

	stale := f.qw.DeepCopy() // the cache's copy, which lags
	for n := int64(1); n <= 3; n++ {
		qw := stale.DeepCopy()
		w.overlay(qw)
		w.submit(qw, backlogStatus(n))
	}
	if got := w.queue.Len(); got != 1 {
		t.Fatalf("queued %d keys for 3 asks, want 1", got)
	}
	seen := stale.DeepCopy()
	w.overlay(seen)
	if *seen.Status.Backlog != 3 {
		t.Fatalf("overlay before the write shows backlog %d, want the newest asked for, 3", *seen.Status.Backlog)
	}
	if !w.processNext(ctx) {
		t.Fatal("queue shut down")
	}
	if f.count() != 1 || *f.server(t).Backlog != 3 {
		t.Fatalf("%d patches, server backlog %v; want 1 patch writing 3", f.count(), f.server(t).Backlog)
	}

	// The cache still lags: the pass sees what was written and asking for
	// it again is no write.
	qw := stale.DeepCopy()
	w.overlay(qw)
	w.submit(qw, backlogStatus(3))
	if w.queue.Len() != 0 || f.count() != 1 {
		t.Fatalf("asking again for the written status queued %d and patched %d times", w.queue.Len(), f.count()-1)
	}

	// The cache catches up: the overlay is dropped.
	caught := &QWorker{}
	if err := f.c.Get(ctx, key, caught); err != nil {
		t.Fatal(err)
	}
	w.overlay(caught)
	if _, held := w.entries[key]; held {
		t.Fatal("overlay kept after the cache showed the written status")
	}
	w.submit(caught, caught.Status)
	if w.queue.Len() != 0 {
		t.Fatal("a status equal to the cache's was queued")
	}
}

// TestStatusWriterRetriesWithTheNewest fails the API server's status
// patches: the write is retried (rate limited) and, once the server is
// back, writes the status asked for last, not the one that failed. A
// QWorker that is gone drops its entry.
func TestStatusWriterRetriesWithTheNewest(t *testing.T) {
	ctx := context.Background()
	f := newStatusFixture(t)
	w := newStatusWriter(f.c, f.clk)
	key := client.ObjectKeyFromObject(f.qw)

	f.fail = errors.New("etcd timeout")
	w.submit(f.qw.DeepCopy(), backlogStatus(1))
	w.processNext(ctx)
	if f.count() != 1 || w.queue.NumRequeues(key) != 1 {
		t.Fatalf("after a failed write: %d patches, %d requeues; want 1 and 1", f.count(), w.queue.NumRequeues(key))
	}
	qw := f.qw.DeepCopy()
	w.overlay(qw)
	w.submit(qw, backlogStatus(2))
	f.fail = nil
	deadline := time.Now().Add(10 * time.Second)
	for f.count() < 2 && time.Now().Before(deadline) {
		// The retry waits out the queue's per-item backoff (5 ms first).
		w.processNext(ctx)
	}
	if got := *f.server(t).Backlog; got != 2 {
		t.Fatalf("server backlog %d after the retry, want the newest asked for, 2", got)
	}
	if f.count() != 2 {
		t.Fatalf("%d patches, want 2 (the failed one and the retry)", f.count())
	}

	f.fail = apierrors.NewNotFound(schema.GroupResource{Group: "quickube.com", Resource: "qworkers"}, "w")
	qw = f.qw.DeepCopy()
	w.overlay(qw)
	w.submit(qw, backlogStatus(5))
	w.processNext(ctx)
	if _, held := w.entries[key]; held || w.queue.Len() != 0 {
		t.Fatal("a deleted QWorker's status is still held or queued")
	}
}

// TestStatusWriterWriteNowFlushes checks the inline write (QScalerSDK mode,
// invalid specs): the status is on the server when writeNow returns, a
// queued write of the same QWorker then costs nothing, and a failed inline
// write is queued for retry (the overlay already shows it, so no later
// pass would ask again).
func TestStatusWriterWriteNowFlushes(t *testing.T) {
	ctx := context.Background()
	f := newStatusFixture(t)
	w := newStatusWriter(f.c, f.clk)

	w.submit(f.qw.DeepCopy(), backlogStatus(1))
	qw := f.qw.DeepCopy()
	w.overlay(qw)
	if err := w.writeNow(ctx, qw, backlogStatus(2)); err != nil {
		t.Fatal(err)
	}
	if got := *f.server(t).Backlog; got != 2 || f.count() != 1 {
		t.Fatalf("server backlog %d after %d patches, want 2 after 1", got, f.count())
	}
	w.processNext(ctx) // the queued ask, already written
	if f.count() != 1 {
		t.Fatalf("the queued write patched again (%d patches)", f.count())
	}

	f.fail = errors.New("connection refused")
	qw = f.qw.DeepCopy()
	w.overlay(qw)
	if err := w.writeNow(ctx, qw, backlogStatus(3)); err == nil {
		t.Fatal("writeNow hid a failed write")
	}
	f.fail = nil
	w.processNext(ctx)
	if got := *f.server(t).Backlog; got != 3 {
		t.Fatalf("server backlog %d, want the failed inline write retried (3)", got)
	}
}

// TestStatusWriterOverlayExpires: a written status the cache never shows
// (someone else wrote the status since) stops masking the cache after
// statusOverlayTTL, and the sweep then drops what the writer held of a
// QWorker no pass reads (a settled one), but never an unwritten status.
func TestStatusWriterOverlayExpires(t *testing.T) {
	ctx := context.Background()
	f := newStatusFixture(t)
	w := newStatusWriter(f.c, f.clk)
	if err := w.writeNow(ctx, f.qw.DeepCopy(), backlogStatus(4)); err != nil {
		t.Fatal(err)
	}
	other := f.qw.DeepCopy()
	other.Status = backlogStatus(9)
	for _, step := range []struct {
		after time.Duration
		want  int64
	}{{time.Second, 4}, {statusOverlayTTL + time.Second, 9}} {
		f.clk.SetTime(t0.Add(step.after))
		qw := other.DeepCopy()
		w.overlay(qw)
		if *qw.Status.Backlog != step.want {
			t.Fatalf("%s after the write the pass reads backlog %d, want %d", step.after, *qw.Status.Backlog, step.want)
		}
	}

	settled := &QWorker{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "settled"}}
	pending := &QWorker{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "pending"}}
	w.entries[client.ObjectKeyFromObject(settled)] = &statusEntry{server: backlogStatus(1), writtenAt: f.clk.Now()}
	w.submit(pending, backlogStatus(2))
	f.clk.SetTime(f.clk.Now().Add(statusOverlayTTL + time.Second))
	w.sweep()
	if _, held := w.entries[client.ObjectKeyFromObject(settled)]; held {
		t.Error("a status written a TTL ago is still held after the sweep")
	}
	if _, held := w.entries[client.ObjectKeyFromObject(pending)]; !held {
		t.Error("the sweep dropped a status not yet written")
	}
}

// TestStatusWriterForgetWaitsForTheWriteInFlight: a hand-over forgets the
// QWorker before writing the new owner's label, so forget must not return
// while this replica's write is still on its way (it would land after the
// new owner's first), and a newer status queued meanwhile must not go out
// after it.
func TestStatusWriterForgetWaitsForTheWriteInFlight(t *testing.T) {
	ctx := context.Background()
	f := newStatusFixture(t)
	f.hold, f.started = make(chan struct{}), make(chan struct{}, 1)
	w := newStatusWriter(f.c, f.clk)
	key := client.ObjectKeyFromObject(f.qw)

	w.submit(f.qw.DeepCopy(), backlogStatus(1))
	go w.processNext(ctx)
	<-f.started // the write of 1 is in flight
	qw := f.qw.DeepCopy()
	w.overlay(qw)
	w.submit(qw, backlogStatus(2)) // queued behind it
	forgotten := make(chan struct{})
	go func() {
		w.forget(key)
		close(forgotten)
	}()
	select {
	case <-forgotten:
		t.Fatal("forget returned while the write was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	f.mu.Lock()
	hold := f.hold
	f.hold = nil
	f.mu.Unlock()
	close(hold)
	<-forgotten
	w.processNext(ctx) // the queued 2, forgotten
	if f.count() != 1 {
		t.Fatalf("%d patches, want only the one in flight before the hand-over", f.count())
	}
}
