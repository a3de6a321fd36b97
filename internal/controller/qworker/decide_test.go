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
		// A poll every window and then some, so the scale-down window
		// lets each successful measurement through.
		at := now.Add(time.Duration(i) * (policy.QWorkerDownWindow(0) + time.Second))
		d := st.decide(at, spec, 0, source.Sample{Backlog: s.backlog, Ready: s.backlog}, s.err)
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

// TestDecideStabilisesScaleDownInEveryMode: without spec.behavior a pool
// follows every rise at once and shrinks only to the highest count of the
// default window (two polls at least), in every retirement mode; a lowered
// maxReplicas caps at once; a failed measurement is the fallback guard's.
func TestDecideStabilisesScaleDownInEveryMode(t *testing.T) {
	window := policy.QWorkerDownWindow(time.Second)
	steps := []struct {
		at      time.Duration
		backlog int64
		max     int32
		err     error
		want    int32
	}{
		{0, 3, 10, nil, 3},                         // rise: at once
		{time.Second, 1, 10, nil, 3},               // dip 1 s later: held at 3
		{2 * time.Second, 0, 10, nil, 3},           // reads empty: held
		{window - time.Second, 2, 10, nil, 3},      // 3 still in the window
		{window + time.Second, 0, 10, nil, 2},      // 3 left the window; 2 did not
		{window + 2*time.Second, 5, 10, nil, 5},    // rise: at once
		{window + 3*time.Second, 4, 3, nil, 3},     // maxReplicas lowered to 3: at once
		{window + 4*time.Second, 0, 3, errFake, 3}, // failed measurement: held by the guard
		{3*window + 4*time.Second, 0, 3, nil, 0},   // a window of nothing: zero
		{3*window + 5*time.Second, 0, 10, nil, 0},  // maxReplicas raised: nothing stale comes back
		{3*window + 6*time.Second, 1, 10, nil, 1},  // rise
		{3*window + 7*time.Second, 0, 10, errFake, 1},
	}
	for _, mode := range []RetirementMode{RetireCooperative, RetireDelete, RetireQScalerSDK} {
		t.Run(string(mode), func(t *testing.T) {
			st := &workerState{}
			t0 := time.Unix(1000, 0)
			for i, s := range steps {
				spec := workerSpec{Retirement: mode, PollingInterval: time.Second,
					Sizing:   policy.QueueSizing{MinReplicas: 0, MaxReplicas: s.max, ScalingFactor: 1},
					Fallback: policy.Fallback{FailureThreshold: 3}}
				d := st.decide(t0.Add(s.at), spec, st.desired, source.Sample{Backlog: s.backlog, Ready: s.backlog}, s.err)
				if d.Desired != s.want {
					t.Fatalf("step %d (t=%s backlog %d max %d): desired %d, want %d (%s)", i, s.at, s.backlog, s.max, d.Desired, s.want, d.Reason)
				}
			}
		})
	}
}

// TestDecideBehaviorOverridesTheDefaultWindow: a behavior with a zero
// scale-down window follows every dip; a behavior without one gets the
// QWorker's default window, not the HPA's 300 s.
func TestDecideBehaviorOverridesTheDefaultWindow(t *testing.T) {
	zero := time.Duration(0)
	window := policy.QWorkerDownWindow(5 * time.Second)
	for _, tc := range []struct {
		name     string
		behavior *policy.Behavior
		at       time.Duration
		want     int32
	}{
		{"default, inside the window", nil, window - time.Second, 4},
		{"default, after the window", nil, window + time.Second, 0},
		{"zero window: off", &policy.Behavior{ScaleDown: policy.ScalingRules{StabilizationWindow: &zero}}, time.Second, 0},
		{"behavior without a down window, inside", &policy.Behavior{}, window - time.Second, 4},
		{"behavior without a down window, after", &policy.Behavior{}, window + time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := workerSpec{PollingInterval: 5 * time.Second, Behavior: tc.behavior,
				Sizing: policy.QueueSizing{MaxReplicas: 10, ScalingFactor: 1}, Fallback: policy.Fallback{FailureThreshold: 3}}
			st := &workerState{}
			t0 := time.Unix(0, 0)
			st.decide(t0, spec, 0, source.Sample{Backlog: 4, Ready: 4}, nil)
			if d := st.decide(t0.Add(tc.at), spec, 4, source.Sample{}, nil); d.Desired != tc.want {
				t.Fatalf("empty queue %s after 4 workers: desired %d, want %d (%s)", tc.at, d.Desired, tc.want, d.Reason)
			}
		})
	}
}

// TestDecideHeldPassKeepsTheReason: passes held by the scale-down window
// keep the reason of the count they hold, so lower readings inside the
// window rewrite no status; the scale-down after it gets its own reason.
func TestDecideHeldPassKeepsTheReason(t *testing.T) {
	spec := workerSpec{PollingInterval: time.Second, Fallback: policy.Fallback{FailureThreshold: 3},
		Sizing: policy.QueueSizing{MaxReplicas: 10, ScalingFactor: 1}}
	st := &workerState{}
	t0 := time.Unix(0, 0)
	up := st.decide(t0, spec, 0, source.Sample{Backlog: 4, Ready: 4}, nil)
	for i, backlog := range []int64{0, 2, 1, 0} {
		d := st.decide(t0.Add(time.Duration(i+1)*time.Second), spec, 4, source.Sample{Backlog: backlog, Ready: backlog}, nil)
		if d.Desired != 4 || d.Reason != up.Reason {
			t.Fatalf("held pass %d (backlog %d): desired %d reason %q, want 4 and %q", i, backlog, d.Desired, d.Reason, up.Reason)
		}
	}
	// The last reading above zero was at 3 s.
	down := st.decide(t0.Add(3*time.Second+policy.QWorkerDownWindow(time.Second)+time.Second), spec, 4, source.Sample{}, nil)
	if down.Desired != 0 || down.Reason == up.Reason {
		t.Fatalf("after the window: desired %d reason %q, want 0 with a reason of its own", down.Desired, down.Reason)
	}
}
