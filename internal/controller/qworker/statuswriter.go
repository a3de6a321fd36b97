package qworker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
)

// statusWriters is how many status writes are in flight at once. The
// client's rate limit, not this, bounds how many go out per second; a few
// in flight keep the limiter fed while leaving room in its queue for the
// pod creates and deletes of the reconciles.
const statusWriters = 4

// statusOverlayTTL is how long a written status is laid over the cache's
// copy when the cache never shows it (someone else wrote the status since):
// far longer than an informer lags, short enough to let an outside write
// through.
const statusOverlayTTL = 30 * time.Second

// statusWriter writes QWorker statuses apart from the reconcile, so a pass
// measures, decides and creates or deletes pods without waiting for its
// status write behind the client's rate limit. At a fresh start of
// thousands of QWorkers each first pass has a status to write, and at the
// default 50 writes/s those writes alone take minutes: written inline they
// held every pass, and with them every first decision, for as long.
//
// Writes of one QWorker coalesce: a status asked for while an older one
// still waits replaces it, so a busy queue costs at most one write per
// QWorker in flight. Until the cache shows what was written, the reconcile
// reads the last status it asked for (overlay), so it neither decides from
// a stale status nor writes the same one twice. Failed writes are retried
// with the work queue's backoff, always with the newest status.
type statusWriter struct {
	client client.Client
	clock  clock.PassiveClock
	queue  workqueue.TypedRateLimitingInterface[types.NamespacedName]

	mu      sync.Mutex
	entries map[types.NamespacedName]*statusEntry
}

// statusEntry is what the writer knows of one QWorker's status.
type statusEntry struct {
	// send is held while a write of this QWorker is in flight, so an inline
	// write (writeNow) and a queued one never overlap.
	send sync.Mutex
	// server is the status as the API server last answered (or, before
	// the first write, as the cache had it): the next patch is the
	// difference from it.
	server qv1.QWorkerStatus
	// want is the newest status asked for; dirty says it is not written yet.
	want  qv1.QWorkerStatus
	dirty bool
	// inflight says want is being written.
	inflight bool
	// writtenAt is when server was last written.
	writtenAt time.Time
}

// newStatusWriter returns a writer; run starts its workers.
func newStatusWriter(c client.Client, clk clock.PassiveClock) *statusWriter {
	return &statusWriter{
		client: c,
		clock:  clk,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[types.NamespacedName](),
			workqueue.TypedRateLimitingQueueConfig[types.NamespacedName]{Name: "qworker_status"}),
		entries: map[types.NamespacedName]*statusEntry{},
	}
}

// run writes queued statuses until ctx ends (a manager runnable, so only
// while this replica leads).
func (w *statusWriter) run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range statusWriters {
		wg.Go(func() {
			for w.processNext(ctx) {
			}
		})
	}
	t := time.NewTicker(statusOverlayTTL)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.sweep()
		case <-ctx.Done():
			w.queue.ShutDown()
			wg.Wait()
			return nil
		}
	}
}

// processNext writes one queued QWorker's status; false once shut down.
func (w *statusWriter) processNext(ctx context.Context) bool {
	key, shutdown := w.queue.Get()
	if shutdown {
		return false
	}
	defer w.queue.Done(key)
	err := w.write(ctx, key)
	switch {
	case err == nil:
		w.queue.Forget(key)
	case apierrors.IsNotFound(err):
		// Deleted: nothing to report on any more.
		w.queue.Forget(key)
		w.forget(key)
	default:
		log.FromContext(ctx).Error(err, "status write failed; retrying", "qworker", key)
		w.queue.AddRateLimited(key)
	}
	return true
}

// submit asks for qw's status to become status, and returns at once. qw is
// the object as the reconcile read it (overlay applied).
func (w *statusWriter) submit(qw *QWorker, status qv1.QWorkerStatus) {
	if w.ask(qw, status) {
		w.queue.Add(client.ObjectKeyFromObject(qw))
	}
}

// writeNow writes status before returning, for the QScalerSDK retirement
// mode (its workers act on the status they read, so it must be on the
// server before a pod changes) and for invalid specs.
func (w *statusWriter) writeNow(ctx context.Context, qw *QWorker, status qv1.QWorkerStatus) error {
	if !w.ask(qw, status) {
		return nil
	}
	key := client.ObjectKeyFromObject(qw)
	if err := w.write(ctx, key); err != nil {
		// The overlay already shows it, so no later pass would ask again.
		w.queue.AddRateLimited(key)
		return err
	}
	return nil
}

// ask records status as wanted, and reports whether it needs a write.
func (w *statusWriter) ask(qw *QWorker, status qv1.QWorkerStatus) bool {
	if equality.Semantic.DeepEqual(qw.Status, status) {
		return false
	}
	key := client.ObjectKeyFromObject(qw)
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.entries[key]
	if e == nil {
		e = &statusEntry{server: *qw.Status.DeepCopy()}
		w.entries[key] = e
	}
	e.want, e.dirty = *status.DeepCopy(), true
	return true
}

// write patches the newest wanted status of key, if any is unwritten.
func (w *statusWriter) write(ctx context.Context, key types.NamespacedName) error {
	w.mu.Lock()
	e := w.entries[key]
	w.mu.Unlock()
	if e == nil {
		return nil
	}
	e.send.Lock()
	defer e.send.Unlock()
	w.mu.Lock()
	if !e.dirty || w.entries[key] != e {
		// Written meanwhile, or forgotten: another replica serves it now.
		w.mu.Unlock()
		return nil
	}
	// Only the status differs between the two, so the patch carries
	// nothing else, and the entry keeps no copy of the spec.
	base := &QWorker{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Status: e.server}
	updated := base.DeepCopy()
	updated.Status = *e.want.DeepCopy()
	e.dirty, e.inflight = false, true
	w.mu.Unlock()

	err := w.client.Status().Patch(ctx, updated, client.MergeFrom(base))
	w.mu.Lock()
	defer w.mu.Unlock()
	e.inflight = false
	if err != nil {
		e.dirty = true // retried with whatever is newest then
		return fmt.Errorf("write status of QWorker %s: %w", key, err)
	}
	e.server, e.writtenAt = updated.Status, w.clock.Now()
	return nil
}

// overlay lays the last status asked for over qw, the cache's copy, until
// the cache shows it; then it forgets the QWorker.
func (w *statusWriter) overlay(qw *QWorker) {
	key := client.ObjectKeyFromObject(qw)
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.entries[key]
	if e == nil {
		return
	}
	if e.dirty || e.inflight {
		qw.Status = *e.want.DeepCopy()
		return
	}
	if equality.Semantic.DeepEqual(qw.Status, e.server) || w.clock.Since(e.writtenAt) > statusOverlayTTL {
		delete(w.entries, key)
		return
	}
	qw.Status = *e.server.DeepCopy()
}

// sweep drops the entries written more than statusOverlayTTL ago with
// nothing more to write. A settled QWorker has no pass that would drop its
// entry when the cache catches up (overlay), and at a fresh start of
// thousands of QWorkers those entries would otherwise stay until the next
// resync.
func (w *statusWriter) sweep() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, e := range w.entries {
		if !e.dirty && !e.inflight && !e.writtenAt.IsZero() && w.clock.Since(e.writtenAt) > statusOverlayTTL {
			delete(w.entries, key)
		}
	}
}

// forget drops what the writer holds of key: the QWorker is gone, or
// another replica serves it now and writes its status. It returns once a
// write of key in flight has finished, so a hand-over (which calls it
// before writing the new owner's label) never has this replica's last
// status land after the new owner's first.
func (w *statusWriter) forget(key types.NamespacedName) {
	w.mu.Lock()
	e := w.entries[key]
	delete(w.entries, key)
	w.mu.Unlock()
	if e != nil {
		e.send.Lock()
		//nolint:staticcheck // empty critical section: waits out the write in flight
		e.send.Unlock()
	}
}
