package podautoscaler

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/cpa"
	"github.com/swell-autoscaler/swell/pkg/source"
)

// measureTimeout bounds one broker call, so a dead broker fails the pass
// (and holds replicas) instead of holding a reconcile worker.
const measureTimeout = 5 * time.Second

// SourceProvider hands out the shared source measuring a queue of a
// ScalerConfig; brokersource.Sources in production, the same one the
// QWorker reconciler uses.
type SourceProvider interface {
	Source(ctx context.Context, namespace, scalerConfig, queue string) (source.Source, error)
}

// errNoSources is a spec.metric.source in a controller built without
// broker sources (only tests build one so).
var errNoSources = errors.New("spec.metric.source: this controller has no broker sources")

// measure reads the queue's backlog once: it is the pass's one metric
// answer, named after the target as a per-resource answer is. Any error
// fails the pass, so an unknown backlog never reads as an empty queue. It
// also returns the source it asked (nil when there was none), even when
// the measurement failed, for the push subscription: a broker that fails
// one measurement may still notify the next message.
func (r *Reconciler) measure(ctx context.Context, ns string, q swellv1.QueueSource, target string) ([]cpa.ResourceMetric, source.Source, error) {
	s, src, err := r.sample(ctx, ns, q)
	if err != nil {
		return nil, src, err
	}
	return []cpa.ResourceMetric{{Resource: target, Value: strconv.FormatInt(s.Backlog, 10)}}, src, nil
}

// sample asks the queue's source once (see measure).
func (r *Reconciler) sample(ctx context.Context, ns string, q swellv1.QueueSource) (source.Sample, source.Source, error) {
	if r.Sources == nil {
		return source.Sample{}, nil, errNoSources
	}
	src, err := r.Sources.Source(ctx, ns, q.ScalerConfigRef, q.Queue)
	if err != nil {
		return source.Sample{}, nil, fmt.Errorf("ScalerConfig %s/%s: %w", ns, q.ScalerConfigRef, err)
	}
	mctx, cancel := context.WithTimeout(ctx, measureTimeout)
	defer cancel()
	s, err := src.Measure(mctx)
	if err != nil {
		return source.Sample{}, src, fmt.Errorf("ScalerConfig %s/%s: measure queue %q: %w", ns, q.ScalerConfigRef, q.Queue, err)
	}
	return s, src, nil
}

// measureWait is measure for a queue source with a wait target: the
// answer is the model's replica count (waittarget.go), and why. The
// target's pods (stats annotations, start-up times) are read once per
// pass; when they cannot be listed the model goes on without them.
func (r *Reconciler) measureWait(ctx context.Context, spec paSpec, target cpa.Target, ts *cpa.TargetState, st *objState, now time.Time) ([]cpa.ResourceMetric, source.Source, string, error) {
	s, src, err := r.sample(ctx, spec.Namespace, *spec.Source)
	if err != nil {
		return nil, src, "", err
	}
	pods, err := target.Pods(ctx, ts)
	if err != nil {
		r.log(ctx).Info("pods of the target unavailable; the wait model goes on without their stats", "err", err.Error())
		pods = nil
	}
	n, why := st.wait.replicas(spec.Wait, waitInput{Now: now, Sample: s, Pods: pods, Current: ts.Replicas, Max: spec.Max, Interval: spec.Interval})
	return []cpa.ResourceMetric{{Resource: ts.Object.GetName(), Value: formatCount(n)}}, src, why, nil
}
