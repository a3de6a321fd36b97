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
//     its task back) while the pool stays above zero;
//   - drains to zero instead of deleting: at a desired count of 0 it
//     publishes the alive pods as currentReplicas, so every worker reads the
//     excess and leaves after the task in hand (which is what the SDK's
//     rule does well: no worker needs choosing when all go), and marks
//     them retiring so the retirement timeout deletes any that never leave.
//     Deleting busy workers at zero made them hand their tasks back, the
//     hand-back woke the pool, and under load the pool churned;
//   - stabilises scale-downs like every QWorker (the default window of
//     pkg/policy, at least two polling intervals, unless spec.behavior
//     says otherwise), which matters most here: a Redis list dips and
//     reads empty while every worker is busy (QScaler's workers pop
//     without a processing list, so in-flight tasks are invisible), and
//     each retirement here is a SIGTERM and a hand-back, so a pool that
//     followed every dip would churn (measured: 73 pods created in 90 s
//     of a light steady load without it);
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
// QScalerSDK above zero, where pods beyond the desired count are being
// retired by the controller and are left out, so QScaler's workers never
// see an excess. At zero they all see it and leave (qscalerDrains).
func publishedCurrent(mode RetirementMode, alive, desired int32) int32 {
	if mode == RetireQScalerSDK && desired > 0 {
		return min(alive, desired)
	}
	return alive
}

// qscalerDrains reports whether a retirement in this pass lets QScaler's
// workers leave by themselves (mode QScalerSDK, pool going to zero) rather
// than being deleted.
func qscalerDrains(mode RetirementMode, desired int32) bool {
	return mode == RetireQScalerSDK && desired == 0
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
