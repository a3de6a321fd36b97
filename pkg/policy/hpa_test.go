package policy

import (
	"errors"
	"testing"
)

func backlogMetric(total int64) []MetricInput {
	return []MetricInput{{Source: ExternalMetric, Target: Target{Type: AverageValueTarget, Milli: 5000}, ExternalMilli: []int64{total * 1000}}}
}

func TestHPADecide(t *testing.T) {
	spec := HPASpec{MinReplicas: 1, MaxReplicas: 10}
	tests := []struct {
		name    string
		spec    HPASpec
		current int32
		metrics []MetricInput
		want    Decision
	}{
		{"scaled to zero by hand stays off", spec, 0, backlogMetric(100), Decision{Replicas: 0, Reason: ReasonDesiredWithinRange}},
		{"above max snaps to max", spec, 12, backlogMetric(0), Decision{Replicas: 10, Reason: ReasonTooManyReplicas}},
		{"below min snaps to min", HPASpec{MinReplicas: 3, MaxReplicas: 10}, 2, backlogMetric(0), Decision{Replicas: 3, Reason: ReasonTooFewReplicas}},
		{"metrics drive a limited scale-up", spec, 2, backlogMetric(100), Decision{Replicas: 6, Reason: ReasonScaleUpLimit}},
		{"scale-up capped by max", spec, 8, backlogMetric(100), Decision{Replicas: 10, Reason: ReasonTooManyReplicas}},
		{"min zero wakes from zero", HPASpec{MaxReplicas: 10}, 0, backlogMetric(12), Decision{Replicas: 3, Reason: ReasonDesiredWithinRange}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NewHPA(tt.spec).Decide(t0, tt.current, PodCounts{Total: tt.current, Ready: tt.current}, tt.metrics)
			if got != tt.want {
				t.Fatalf("Decide = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestHPADecideHoldsOnMetricFailure(t *testing.T) {
	h := NewHPA(HPASpec{MinReplicas: 1, MaxReplicas: 10})
	d := h.Decide(t0, 4, PodCounts{Total: 4, Ready: 4}, []MetricInput{{Source: ExternalMetric, Err: errors.New("down")}})
	if d.Replicas != 4 || d.Err == nil || d.Reason != ReasonMetricsFailed || d.Rescale(4) {
		t.Fatalf("Decide on failure = %+v, want hold at 4 with an error", d)
	}
}

// A backlog that vanishes keeps the HPA up for the 300 s default window,
// then lets it drop at once.
func TestHPADownscaleWaitsForDefaultWindow(t *testing.T) {
	h := NewHPA(HPASpec{MinReplicas: 1, MaxReplicas: 20})
	current := int32(10)
	step := func(sec int, backlog int64) int32 {
		now := t0.Add(secs(sec))
		d := h.Decide(now, current, PodCounts{Total: current, Ready: current}, backlogMetric(backlog))
		if d.Rescale(current) {
			h.Scaled(now, current, d.Replicas)
			current = d.Replicas
		}
		return current
	}
	if got := step(0, 50); got != 10 {
		t.Fatalf("at target: %d, want 10", got)
	}
	for sec := 15; sec < 300; sec += 15 {
		if got := step(sec, 0); got != 10 {
			t.Fatalf("t=%ds: %d replicas, want 10 while the window remembers the peak", sec, got)
		}
	}
	// Upstream keeps recommendations strictly newer than now-300s.
	if got := step(300, 0); got != 1 {
		t.Fatalf("t=300s: %d replicas, want 1 once the peak left the window", got)
	}
}

func TestHPASpecValidate(t *testing.T) {
	bad := []HPASpec{{MinReplicas: -1, MaxReplicas: 1}, {MaxReplicas: 0}, {MinReplicas: 3, MaxReplicas: 2}, {MaxReplicas: 1, Tolerance: Tolerance{Up: -1}}}
	for _, s := range bad {
		if s.Validate() == nil {
			t.Errorf("Validate accepted %+v", s)
		}
	}
	if err := (HPASpec{MaxReplicas: 1}).Validate(); err != nil {
		t.Fatalf("valid spec rejected: %v", err)
	}
}
