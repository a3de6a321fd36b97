package policy

import (
	"fmt"
	"time"
)

// HPASpec is an HPA v2 object reduced to what the decision needs.
type HPASpec struct {
	// MinReplicas may be 0 (upstream's HPAScaleToZero); then Object or
	// External metrics can wake the target from zero.
	MinReplicas int32
	MaxReplicas int32
	Behavior    Behavior
	// Tolerance defaults to [DefaultTolerance] when zero.
	Tolerance Tolerance
}

// Validate reports a spec the API server would reject.
func (s HPASpec) Validate() error {
	switch {
	case s.MinReplicas < 0:
		return fmt.Errorf("minReplicas %d: must be >= 0", s.MinReplicas)
	case s.MaxReplicas < 1:
		return fmt.Errorf("maxReplicas %d: must be >= 1", s.MaxReplicas)
	case s.MinReplicas > s.MaxReplicas:
		return fmt.Errorf("minReplicas %d > maxReplicas %d: min must not exceed max", s.MinReplicas, s.MaxReplicas)
	case s.Tolerance.Up < 0 || s.Tolerance.Down < 0:
		return fmt.Errorf("tolerance %+v: must be >= 0", s.Tolerance)
	}
	return s.Behavior.Validate()
}

// HPA is one horizontal pod autoscaler's decision state. It reproduces the
// upstream controller's reconcile step: out-of-range counts snap to the
// range, otherwise metrics propose and behaviour normalizes.
type HPA struct {
	spec       HPASpec
	normalizer *Normalizer
}

// NewHPA returns an HPA with upstream defaults filled in.
func NewHPA(spec HPASpec) *HPA {
	if spec.Tolerance == (Tolerance{}) {
		spec.Tolerance = DefaultTolerance
	}
	return &HPA{spec: spec, normalizer: NewNormalizer(spec.Behavior)}
}

// Decision is what one reconcile concluded.
type Decision struct {
	// Replicas is the count to apply; equal to current when nothing changes.
	Replicas int32
	// Reason explains the count (a [Reason] or a metric failure).
	Reason Reason
	// Err is set when the metrics could not produce a proposal; Replicas
	// is then current (the HPA never acts on a failed measurement).
	Err error
}

// Rescale reports whether d changes the count from current.
func (d Decision) Rescale(current int32) bool { return d.Replicas != current }

// ReasonMetricsFailed reports that metrics failed and the count was held.
const ReasonMetricsFailed Reason = "FailedGetMetrics"

// Decide runs one reconcile at now. It does not assume the change is made:
// call [HPA.Scaled] after writing it so the rate limits count it.
func (h *HPA) Decide(now time.Time, current int32, pods PodCounts, metrics []MetricInput) Decision {
	lo, hi := h.spec.MinReplicas, h.spec.MaxReplicas
	switch {
	case current == 0 && lo != 0:
		// Scaled to zero by hand: autoscaling is off until someone scales up.
		return Decision{Replicas: 0, Reason: ReasonDesiredWithinRange}
	case current > hi:
		return Decision{Replicas: hi, Reason: ReasonTooManyReplicas}
	case current < lo:
		return Decision{Replicas: lo, Reason: ReasonTooFewReplicas}
	}
	proposal, err := HPARecommendation(current, pods, metrics, h.spec.Tolerance)
	if err != nil {
		return Decision{Replicas: current, Reason: ReasonMetricsFailed, Err: err}
	}
	n, reason := h.normalizer.Normalize(now, current, proposal, lo, hi)
	return Decision{Replicas: n, Reason: reason}
}

// Scaled records that the count went from prev to next at now.
func (h *HPA) Scaled(now time.Time, prev, next int32) {
	h.normalizer.RecordScale(now, prev, next)
}
