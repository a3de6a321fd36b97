package policy

import (
	"errors"
	"testing"
	"time"
)

func TestQWorkerRatio(t *testing.T) {
	p := QWorkerDefaults(0, 10, 0.5)
	for _, tc := range []struct {
		name string
		r    QueueReading
		want int32
	}{
		{"queued only by default", QueueReading{Ready: 7, InFlight: 100}, 4},
		{"total-only sources", QueueReading{Backlog: 9}, 5},
		{"empty", QueueReading{}, 0},
		{"capped", QueueReading{Ready: 1000}, 10},
	} {
		if got := p.Ratio(tc.r); got != tc.want {
			t.Errorf("%s: Ratio(%+v) = %d, want %d", tc.name, tc.r, got, tc.want)
		}
	}
}

func TestQWorkerDefaults(t *testing.T) {
	p := QWorkerDefaults(1, 9, 2)
	if p.Behavior != nil || p.Sizing.CountInFlight || p.Sizing.ActivationThreshold != 0 ||
		p.Fallback != (Fallback{FailureThreshold: QWorkerFailureThreshold}) {
		t.Fatalf("defaults %+v: want QScaler's semantics (no behavior, queued only, activation 0, hold on failure)", p)
	}
	if got := p.Initial(0); got != 1 {
		t.Errorf("Initial(0) = %d, want min 1", got)
	}
	if got := p.Initial(50); got != 9 {
		t.Errorf("Initial(50) = %d, want max 9", got)
	}
}

// A failure holds the previous count until the threshold, then applies the
// fallback count; a success passes the raw count through.
func TestQWorkerSettleFallback(t *testing.T) {
	p := QWorkerDefaults(0, 20, 1)
	p.Fallback = Fallback{FailureThreshold: 2, Replicas: 7}
	var m QWorkerMemory
	down := errors.New("down")
	steps := []struct {
		prev, raw int32
		err       error
		want      int32
		falling   bool
	}{
		{0, 5, nil, 5, false},
		{5, 0, down, 5, true},
		{5, 0, down, 7, true},
		{7, 3, nil, 3, false},
	}
	for i, s := range steps {
		got := m.Settle(t0, p, s.prev, s.raw, s.err)
		if got.Desired != s.want || got.FallingBack != s.falling {
			t.Fatalf("step %d: %+v, want desired %d falling back %v", i, got, s.want, s.falling)
		}
	}
}

// Behavior's history survives a spec decoded again with new pointers.
func TestQWorkerSettleBehaviorKeepsHistory(t *testing.T) {
	behavior := func() *Behavior {
		w := 30 * time.Second
		return &Behavior{ScaleDown: ScalingRules{StabilizationWindow: &w}}
	}
	p := QWorkerDefaults(0, 100, 1)
	var m QWorkerMemory
	p.Behavior = behavior()
	if got := m.Settle(t0, p, 0, 4, nil); got.Desired != 4 {
		t.Fatalf("scale up: %+v", got)
	}
	p.Behavior = behavior()
	if got := m.Settle(t0.Add(10*time.Second), p, 4, 0, nil); got.Desired != 4 || !got.Limited {
		t.Fatalf("inside the down window with a re-decoded behavior: %+v, want 4 held", got)
	}
	p.Behavior = behavior()
	if got := m.Settle(t0.Add(41*time.Second), p, 4, 0, nil); got.Desired != 0 {
		t.Fatalf("after the window: %+v, want 0", got)
	}
}
