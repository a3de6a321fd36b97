package qworker

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/swell-autoscaler/swell/pkg/source"
)

// Quiet polling: how settled QWorkers are measured without a reconcile.
//
// At ten thousand QWorkers polled every second, a reconcile per poll is ten
// thousand passes a second (pods listed, a decision, a status compared),
// almost all of them for idle queues whose answer cannot change. A QWorker
// whose last decision left it settled (settledPool) is therefore handed to
// the poller: it measures the queue on the QWorker's own interval, and
// wakes the reconcile only when the sample differs from the one the
// decision was made on, the broker fails, or the QWorker is no longer
// settled. An unchanged idle sample changes nothing a reconcile would do,
// so it is counted (swell_qworker_measurements_total, trigger "poll") and
// dropped. Pod events, spec changes, push wake-ups and a slow resync
// (settledResync) still reconcile as before.

// settledResync is how often a settled QWorker is reconciled anyway, as a
// safety net under the quiet polls.
const settledResync = 5 * time.Minute

// settledPool reports whether a pass leaves a QWorker in the state a quiet
// poll may stand for: the queue idle, the pool at its floor, every pod
// ready and none retiring, nothing owed by the cache, no error, and no
// input a pass reads besides the queue and the pods (worker stats for a
// wait target, pod metrics for activateVPA, a scale-up window). In that
// state the same idle sample gives the same decision (it cannot scale below
// MinReplicas, and nothing grows a pool on an empty queue), so skipping the
// reconcile skips nothing.
func settledPool(spec workerSpec, d decision, sample source.Sample, view poolView, active int32, cacheCaughtUp bool) bool {
	switch {
	case d.MeasureErr != nil, d.FallingBack, !d.Measured, !cacheCaughtUp:
		return false
	case sample.Backlog != 0 || sample.Ready != 0 || sample.InFlight != 0:
		return false
	case d.Desired != spec.Sizing.MinReplicas || d.Raw != d.Desired:
		return false
	case active != d.Desired || view.alive != active || view.ready != active:
		return false
	case spec.WaitTarget != nil && active > 0:
		// The wait model reads the workers' stats, which change without
		// a pod event the reconcile would see.
		return false
	case spec.ActivateVPA && active > 0:
		// Peak usage is read from metrics.k8s.io on every pass.
		return false
	case spec.Behavior != nil && spec.Behavior.ScaleUp.StabilizationWindow != nil && *spec.Behavior.ScaleUp.StabilizationWindow > 0:
		// A scale-up window takes the lowest recommendation within it:
		// the idle polls must be recorded as recommendations to hold the
		// first burst back as configured.
		return false
	}
	return len(view.finished) == 0 && len(view.overdue) == 0 && len(view.unstamped) == 0
}

// sameSample reports whether two samples would decide alike (the time
// they were taken aside).
func sameSample(a, b source.Sample) bool {
	return a.Backlog == b.Backlog && a.Ready == b.Ready && a.InFlight == b.InFlight && a.OldestAge == b.OldestAge
}

// pollEntry is one settled QWorker waiting for its next measurement.
type pollEntry struct {
	key  types.NamespacedName
	due  time.Time
	spec workerSpec
	qw   *QWorker
	// src is the source the last quiet poll measured through; nil after a
	// reconcile, which may have changed what the QWorker measures.
	src source.Source
	idx int
}

// pollHeap orders entries by due time.
type pollHeap []*pollEntry

func (h pollHeap) Len() int           { return len(h) }
func (h pollHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h pollHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *pollHeap) Push(x any) {
	e := x.(*pollEntry)
	e.idx = len(*h)
	*h = append(*h, e)
}
func (h *pollHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.idx = -1
	return e
}

// pollQueue is the settled QWorkers by next due time: at most one entry
// per QWorker, the latest schedule replacing an earlier one.
type pollQueue struct {
	mu    sync.Mutex
	h     pollHeap
	byKey map[types.NamespacedName]*pollEntry
	// kick is signalled when an entry may now be the earliest.
	kick chan struct{}
}

func newPollQueue() *pollQueue {
	return &pollQueue{byKey: map[types.NamespacedName]*pollEntry{}, kick: make(chan struct{}, 1)}
}

// schedule polls key at due with spec, qw and src, replacing its earlier
// entry.
func (q *pollQueue) schedule(key types.NamespacedName, due time.Time, spec workerSpec, qw *QWorker, src source.Source) {
	q.mu.Lock()
	if e := q.byKey[key]; e != nil {
		e.due, e.spec, e.qw, e.src = due, spec, qw, src
		heap.Fix(&q.h, e.idx)
	} else {
		e := &pollEntry{key: key, due: due, spec: spec, qw: qw, src: src}
		heap.Push(&q.h, e)
		q.byKey[key] = e
	}
	first := q.h[0].key == key
	q.mu.Unlock()
	if first {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
}

// remove drops key's entry, if any.
func (q *pollQueue) remove(key types.NamespacedName) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if e := q.byKey[key]; e != nil {
		heap.Remove(&q.h, e.idx)
		delete(q.byKey, key)
	}
}

// popDue removes and returns the entries due at now, and how long until
// the next one (0 when none is left).
func (q *pollQueue) popDue(now time.Time) (due []*pollEntry, next time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.h) > 0 && !q.h[0].due.After(now) {
		e := heap.Pop(&q.h).(*pollEntry)
		delete(q.byKey, e.key)
		due = append(due, e)
	}
	if len(q.h) > 0 {
		next = q.h[0].due.Sub(now)
	}
	return due, next
}

// len is the number of settled QWorkers waiting.
func (q *pollQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.h)
}

// idlePoll is how long the poller sleeps with nothing scheduled; a
// schedule call wakes it earlier.
const idlePoll = time.Minute

// runPoller measures due settled QWorkers until ctx ends.
func (r *Reconciler) runPoller(ctx context.Context) error {
	q := r.scheds().polls
	timer := time.NewTimer(idlePoll)
	defer timer.Stop()
	for {
		due, next := q.popDue(r.Clock.Now())
		for _, e := range due {
			r.pollOnce(ctx, e)
		}
		if next <= 0 {
			next = idlePoll
		}
		timer.Reset(next)
		select {
		case <-ctx.Done():
			return nil
		case <-q.kick:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
}

// pollOnce starts e's measurement if its QWorker is still settled and due;
// the result comes back through runMeasurement.
func (r *Reconciler) pollOnce(ctx context.Context, e *pollEntry) {
	s := r.scheds().lookup(e.key)
	if s == nil {
		return // forgotten: deleted, paused or handed to another replica
	}
	now := r.Clock.Now()
	sourceKey := sourceKeyOf(e.spec)
	s.mu.Lock()
	if !s.settled || s.sourceKey != sourceKey {
		s.mu.Unlock()
		return // a reconcile took it back
	}
	trigger, wait := s.due(now, e.spec.PollingInterval, sourceKey)
	if trigger == "" {
		inflight := s.inflight
		s.mu.Unlock()
		if !inflight { // an in-flight result settles it again when it lands
			r.scheds().polls.schedule(e.key, now.Add(wait), e.spec, e.qw, e.src)
		}
		return
	}
	done := s.begin(now, sourceKey, false)
	s.mu.Unlock()
	r.Metrics.measured(e.key, trigger)
	go r.runMeasurement(ctx, e.spec, e.qw, s, trigger, done, e.src)
}
