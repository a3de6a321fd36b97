package qworker

import (
	"errors"
	"testing"
	"time"

	"github.com/swell-autoscaler/swell/pkg/policy"
	"github.com/swell-autoscaler/swell/pkg/source"
)

func TestDecideNeverScalesDownOnSourceFailure(t *testing.T) {
	spec := workerSpec{
		Sizing:   policy.QueueSizing{MinReplicas: 0, MaxReplicas: 10, ScalingFactor: 0.1},
		Fallback: policy.Fallback{FailureThreshold: 2, Replicas: 0},
	}
	now := time.Unix(1000, 0)
	st := &workerState{}
	steps := []struct {
		backlog int64
		err     error
		want    int32
	}{
		{backlog: 55, want: 6},
		{err: errors.New("connection refused"), want: 6},
		{err: errors.New("connection refused"), want: 6},
		{err: errors.New("connection refused"), want: 6},
		{backlog: 0, want: 0},
		{err: errors.New("timeout"), want: 0},
		{backlog: 1, want: 1},
	}
	for i, s := range steps {
		d := st.decide(now.Add(time.Duration(i)*time.Second), spec, 0, source.Sample{Backlog: s.backlog, Ready: s.backlog}, s.err)
		if d.Desired != s.want {
			t.Fatalf("step %d (backlog %d, err %v): desired %d, want %d (%s)", i, s.backlog, s.err, d.Desired, s.want, d.Reason)
		}
		if s.err != nil && !d.FallingBack {
			t.Fatalf("step %d: failure not reported as fallback", i)
		}
	}
}

func TestDecideFallbackReplicasAfterThreshold(t *testing.T) {
	spec := workerSpec{
		Sizing:   policy.QueueSizing{MinReplicas: 1, MaxReplicas: 20, ScalingFactor: 1},
		Fallback: policy.Fallback{FailureThreshold: 2, Replicas: 7},
	}
	st := &workerState{}
	now := time.Unix(0, 0)
	st.decide(now, spec, 1, source.Sample{Backlog: 3, Ready: 3}, nil)
	fail := errors.New("down")
	if d := st.decide(now, spec, 3, source.Sample{}, fail); d.Desired != 3 {
		t.Fatalf("first failure: desired %d, want hold at 3", d.Desired)
	}
	if d := st.decide(now, spec, 3, source.Sample{}, fail); d.Desired != 7 {
		t.Fatalf("second failure: desired %d, want fallback 7", d.Desired)
	}
}

func TestDecideAppliesBehavior(t *testing.T) {
	window := 30 * time.Second
	spec := workerSpec{
		Sizing:   policy.QueueSizing{MinReplicas: 0, MaxReplicas: 100, ScalingFactor: 1},
		Behavior: &policy.Behavior{ScaleDown: policy.ScalingRules{StabilizationWindow: &window}},
	}
	st := &workerState{}
	now := time.Unix(0, 0)
	if d := st.decide(now, spec, 0, source.Sample{Backlog: 4, Ready: 4}, nil); d.Desired != 4 {
		t.Fatalf("scale up: desired %d, want 4", d.Desired)
	}
	if d := st.decide(now.Add(10*time.Second), spec, 4, source.Sample{}, nil); d.Desired != 4 {
		t.Fatalf("inside the down window: desired %d, want 4 held", d.Desired)
	}
	if d := st.decide(now.Add(41*time.Second), spec, 4, source.Sample{}, nil); d.Desired != 0 {
		t.Fatalf("after the down window: desired %d, want 0", d.Desired)
	}
}
