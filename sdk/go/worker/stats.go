package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/swell-autoscaler/swell/pkg/source/stats"
)

// statsReporter keeps the worker's task counters and writes them to its
// own pod (stats.Annotation) at most once per interval, only when they
// changed: a task costs no API write, and an idle worker writes nothing.
// The controller reads them from its pod cache for the wait-time target
// and the per-QWorker task metric.
type statsReporter struct {
	kube     kubernetes.Interface
	id       Identity
	interval time.Duration
	now      func() time.Time
	// deadLettered reads the queue's dead-letter count (DeadLetterCounter);
	// nil when the queue does not keep one.
	deadLettered func() int64

	mu  sync.Mutex
	rec *stats.Recorder
}

func newStatsReporter(kube kubernetes.Interface, id Identity, now func() time.Time) *statsReporter {
	interval := id.StatsInterval
	if interval <= 0 {
		interval = stats.DefaultInterval
	}
	return &statsReporter{kube: kube, id: id, interval: interval, now: now, rec: stats.NewRecorder(1)}
}

// countDeadLetters makes the reports carry q's dead-letter count when q
// keeps one.
func (s *statsReporter) countDeadLetters(q Queue) {
	if c, ok := q.(DeadLetterCounter); ok {
		s.deadLettered = c.DeadLettered
	}
}

// task records one finished task that took busy; failed when the handler
// returned an error and the task was handed back.
func (s *statsReporter) task(busy time.Duration, failed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if failed {
		s.rec.Failure(busy)
		return
	}
	s.rec.Task(busy)
}

// run writes due reports until ctx ends.
func (s *statsReporter) run(ctx context.Context) {
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// A failed write is retried at the next tick; the counters are
			// cumulative, so nothing is lost.
			_ = s.write(ctx, false)
		}
	}
}

// write patches the pod with the current counters when due (or, with
// force, whenever they changed: the last report before leaving).
func (s *statsReporter) write(ctx context.Context, force bool) error {
	var dead int64
	if s.deadLettered != nil {
		dead = s.deadLettered()
	}
	s.mu.Lock()
	s.rec.DeadLettered(dead)
	now := s.now()
	rep, due := s.rec.Due(now, s.interval)
	if force && s.rec.Changed() {
		rep, due = s.rec.Current(), true
	}
	s.mu.Unlock()
	if !due {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{stats.Annotation: stats.Encode(rep)}}})
	if err != nil {
		return fmt.Errorf("encode stats patch: %w", err)
	}
	if _, err := s.kube.CoreV1().Pods(s.id.Namespace).Patch(ctx, s.id.Pod, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("write task stats to pod %s: %w", s.id.Pod, err)
	}
	s.mu.Lock()
	s.rec.Written(now, rep)
	s.mu.Unlock()
	return nil
}
