package qworker

import (
	"fmt"
	"time"

	"github.com/swell-autoscaler/swell/pkg/policy"
	"github.com/swell-autoscaler/swell/pkg/source"
)

// workerState is what the controller remembers about one QWorker between
// reconciles: behaviour history, the failure run, and the last decision.
// It lives in memory; after a restart the first decision starts fresh from
// the pods that exist, which is always safe.
type workerState struct {
	normalizer  *policy.Normalizer
	behaviorKey string
	guard       policy.FallbackGuard
	// decided is false until the first decision; desired then holds it.
	decided bool
	desired int32
	backlog int64
	// lastMeasured is when the source last answered.
	lastMeasured time.Time
	// wait is the wait-time target's memory (waittarget.go).
	wait waitState
}

// decision is one scaling decision with the inputs that produced it, for
// the status, the events and the metrics.
type decision struct {
	Backlog     int64
	Measured    bool
	MeasureErr  error
	Raw         int32
	Desired     int32
	Previous    int32
	FallingBack bool
	Reason      string
	// Wait is set when a wait target sized the pool (waittarget.go).
	Wait *waitOutcome
}

// decide turns a measurement into the desired pool size. A failed
// measurement never lowers the pool: the fallback guard holds the last
// decision (or applies the configured fallback count).
func (st *workerState) decide(now time.Time, spec workerSpec, active int32, sample source.Sample, measureErr error) decision {
	if !st.decided {
		st.desired = clampReplicas(active, spec.Sizing)
		st.decided = true
	}
	d := decision{Previous: st.desired, MeasureErr: measureErr}
	if measureErr == nil {
		d.Measured = true
		d.Backlog = sample.Backlog
		st.backlog = sample.Backlog
		st.lastMeasured = now
	} else {
		d.Backlog = st.backlog
	}
	raw := spec.Sizing.Desired(policy.QueueSample{Queued: sample.Ready, InFlight: sample.InFlight})
	if measureErr == nil && sample.Ready == 0 && sample.InFlight == 0 && sample.Backlog > 0 {
		// Sources that only know the total report it as Backlog.
		raw = spec.Sizing.Desired(policy.QueueSample{Queued: sample.Backlog})
	}
	if w, ok := st.waitTarget(now, spec, active, sample, measureErr, raw); ok {
		raw, d.Wait = w.Raw, &w
	}
	d.Raw = raw
	st.guard.Policy = spec.Fallback
	held, fallingBack := st.guard.Apply(st.desired, raw, measureErr)
	d.FallingBack = fallingBack
	d.Desired = held
	d.Reason = reasonFor(spec, d)
	if !fallingBack && spec.Behavior != nil {
		n := st.normalizerFor(spec.Behavior)
		var why policy.Reason
		d.Desired, why = n.Normalize(now, st.desired, raw, spec.Sizing.MinReplicas, spec.Sizing.MaxReplicas)
		if d.Desired != raw {
			d.Reason = fmt.Sprintf("%s (%s)", d.Reason, why)
		}
		if d.Desired != st.desired {
			n.RecordScale(now, st.desired, d.Desired)
		}
	}
	st.desired = d.Desired
	return d
}

func (st *workerState) normalizerFor(b *policy.Behavior) *policy.Normalizer {
	key := fmt.Sprintf("%+v", *b)
	if st.normalizer == nil || st.behaviorKey != key {
		st.normalizer = policy.NewNormalizer(*b)
		st.behaviorKey = key
	}
	return st.normalizer
}

// reasonFor explains a decision in one line, for events and status.
func reasonFor(spec workerSpec, d decision) string {
	if d.FallingBack {
		if spec.Fallback.Replicas > 0 && d.Desired == spec.Fallback.Replicas {
			return fmt.Sprintf("source failing: fallback to %d replicas", d.Desired)
		}
		return fmt.Sprintf("source failing: holding %d replicas", d.Desired)
	}
	if d.Wait != nil {
		return d.Wait.Reason
	}
	if !spec.Sizing.Active(policy.QueueSample{Queued: d.Backlog}) {
		return fmt.Sprintf("backlog %d at or below activation threshold %d: minReplicas %d",
			d.Backlog, spec.Sizing.ActivationThreshold, spec.Sizing.MinReplicas)
	}
	return fmt.Sprintf("backlog %d × scalingFactor %g → %d (min %d, max %d)",
		d.Backlog, spec.Sizing.ScalingFactor, d.Raw, spec.Sizing.MinReplicas, spec.Sizing.MaxReplicas)
}

func clampReplicas(n int32, s policy.QueueSizing) int32 {
	return min(max(n, s.MinReplicas), s.MaxReplicas)
}
