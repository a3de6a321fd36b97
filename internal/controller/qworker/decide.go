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
	// memory is the decision's failure run and behavior history; the
	// decision itself is pkg/policy's, shared with the simulator.
	memory policy.QWorkerMemory
	// decided is false until the first decision; desired then holds it.
	decided bool
	desired int32
	// reason explains desired; a pass held by the scale-down window keeps it.
	reason  string
	backlog int64
	// lastMeasured is when the source last answered.
	lastMeasured time.Time
	// wait is the wait-time target's memory (waittarget.go).
	wait waitState
	// tasks is the task metric's memory (taskmetric.go).
	tasks taskOutcomes
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
	p := qworkerPolicy(spec)
	if !st.decided {
		st.desired = p.Initial(active)
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
	raw := p.Ratio(policy.QueueReading{Ready: sample.Ready, InFlight: sample.InFlight, Backlog: sample.Backlog})
	if w, ok := st.waitTarget(now, spec, active, sample, measureErr, raw); ok {
		raw, d.Wait = w.Raw, &w
	}
	d.Raw = raw
	out := st.memory.Settle(now, p, st.desired, raw, measureErr)
	d.FallingBack, d.Desired = out.FallingBack, out.Desired
	d.Reason = reasonFor(spec, d)
	switch {
	case out.Why == policy.ReasonScaleDownStabilize && d.Desired == d.Previous && st.reason != "":
		// Held by the scale-down window: the count, and so the reason
		// that explained it, stand; lower readings inside the window
		// rewrite no status.
		d.Reason = st.reason
	case out.Limited:
		d.Reason = fmt.Sprintf("%s (%s)", d.Reason, out.Why)
	}
	st.desired, st.reason = d.Desired, d.Reason
	return d
}

// qworkerPolicy is the part of spec the decision in pkg/policy takes. The
// default scale-down stabilisation follows the polling interval (two polls
// at least) and applies in every retirement mode to pools sized by
// scalingFactor, which follow the backlog of the moment; a wait target
// sizes from rates and has its own idle rule, so it gets none by default.
// spec.behavior's stabilizationWindowSeconds replaces either.
func qworkerPolicy(spec workerSpec) policy.QWorkerPolicy {
	p := policy.QWorkerPolicy{Sizing: spec.Sizing, Behavior: spec.Behavior, Fallback: spec.Fallback}
	if spec.WaitTarget == nil {
		p.DownWindow = policy.QWorkerDownWindow(spec.PollingInterval)
	}
	return p
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
