package qworker

import (
	"context"

	"github.com/swell-autoscaler/swell/pkg/source"
)

// Retirement mode QScalerSDK: what a pool of unchanged QScaler Python SDK
// workers needs from the controller.
//
// Such a worker, between tasks, re-reads its QWorker and leaves (drops its
// owner reference and deletes its own pod) when status.desiredReplicas <
// status.currentReplicas or its POD_SPEC_HASH differs from
// status.currentPodSpecHash. Nothing in that rule picks *which* workers
// leave, so every worker that reads an excess leaves. On SIGTERM it pushes
// the task in hand back onto the queue (LPUSH of the pickled task) — and,
// when it was idle, the pickled None it holds instead: a message that is no
// work, which QScaler's workers skip but which LLEN counts.
//
// So in this mode the controller:
//   - publishes currentReplicas without the pods it retires (publishedCurrent:
//     never above desiredReplicas), so no worker ever reads an excess;
//   - writes that status before it creates or deletes any pod in a pass, so
//     the first pod it deletes is already covered, and a new pod reads its
//     own spec hash;
//   - retires by deleting exactly the chosen pods (SIGTERM → the SDK hands
//     its task back);
//   - removes the SDK's empty hand-back messages from a Redis list, in the
//     same atomic step as measuring it, so they are never counted as
//     backlog (they would wake a pod from zero to consume nothing, whose
//     retirement pushes the next one).

// qscalerHandBacks are the messages QScaler's Python SDK pushes when SIGTERM
// finds it idle: pickle.dumps(None) in every pickle protocol (0 and 1 give
// the same bytes; Python 3.8–3.13 use protocol 4 by default, 3.14 uses 5).
var qscalerHandBacks = []string{"N.", "\x80\x02N.", "\x80\x03N.", "\x80\x04N.", "\x80\x05N."}

// dropMeasurer is implemented by sources that can remove given messages
// and measure in one atomic step (Redis lists).
type dropMeasurer interface {
	MeasureDropping(ctx context.Context, values []string) (source.Sample, int64, error)
}

// publishedCurrent is status.currentReplicas: the alive pods, except in mode
// QScalerSDK, where pods beyond the desired count are being retired by the
// controller and are left out, so QScaler's workers never see an excess.
func publishedCurrent(mode RetirementMode, alive, desired int32) int32 {
	if mode == RetireQScalerSDK {
		return min(alive, desired)
	}
	return alive
}

// measureSource measures src; in mode QScalerSDK it first drops QScaler's
// empty hand-back messages when the source can, and counts them in the
// metrics.
func (r *Reconciler) measureSource(ctx context.Context, spec workerSpec, src source.Source) (source.Sample, error) {
	if spec.Retirement != RetireQScalerSDK {
		return src.Measure(ctx)
	}
	dm, ok := src.(dropMeasurer)
	if !ok {
		return src.Measure(ctx)
	}
	s, dropped, err := dm.MeasureDropping(ctx, qscalerHandBacks)
	if err == nil && dropped > 0 {
		r.Metrics.handBacksDropped.Add(float64(dropped))
	}
	return s, err
}
