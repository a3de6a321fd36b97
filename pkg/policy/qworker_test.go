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
	if p.DownWindow != QWorkerScaleDownWindow || p.DownWindow < 2*QWorkerPollingInterval {
		t.Fatalf("default scale-down window %v, want %v (at least two default polls)", p.DownWindow, QWorkerScaleDownWindow)
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
	p.DownWindow = 0 // about the guard alone
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

func TestQWorkerDownWindowIsTwoPollsAtLeast(t *testing.T) {
	for _, c := range []struct{ interval, want time.Duration }{
		{0, QWorkerScaleDownWindow},
		{time.Second, QWorkerScaleDownWindow},
		{QWorkerScaleDownWindow / 2, QWorkerScaleDownWindow},
		{time.Minute, 2 * time.Minute},
	} {
		if got := QWorkerDownWindow(c.interval); got != c.want {
			t.Errorf("QWorkerDownWindow(%v) = %v, want %v", c.interval, got, c.want)
		}
	}
}

// The default stabilisation: rises at once, scale-downs (to zero included)
// only to the highest count of the window, a lowered maximum at once,
// failures left to the guard, and an explicit behavior in its place.
func TestQWorkerSettleDefaultStabilisation(t *testing.T) {
	zero := time.Duration(0)
	long := time.Minute
	type step struct {
		sec       int
		prev, raw int32
		max       int32
		err       error
		want      int32
		why       Reason
	}
	down := errors.New("down")
	for _, tc := range []struct {
		name     string
		window   time.Duration
		behavior *Behavior
		steps    []step
	}{
		{"dip inside the window is held", 10 * time.Second, nil, []step{
			{0, 0, 5, 10, nil, 5, ReasonDesiredWithinRange},
			{1, 5, 0, 10, nil, 5, ReasonScaleDownStabilize},
			{3, 5, 6, 10, nil, 6, ReasonDesiredWithinRange},
			{12, 6, 2, 10, nil, 6, ReasonScaleDownStabilize},
			{14, 6, 2, 10, nil, 2, ReasonDesiredWithinRange},
		}},
		{"activation to zero only after the window", 10 * time.Second, nil, []step{
			{0, 0, 3, 10, nil, 3, ReasonDesiredWithinRange},
			{5, 3, 0, 10, nil, 3, ReasonScaleDownStabilize},
			{10, 3, 0, 10, nil, 3, ReasonScaleDownStabilize},
			{11, 3, 0, 10, nil, 0, ReasonDesiredWithinRange},
		}},
		{"held count never above previous", 10 * time.Second, nil, []step{
			{0, 0, 8, 10, nil, 8, ReasonDesiredWithinRange},
			{1, 4, 2, 10, nil, 4, ReasonScaleDownStabilize}, // someone lowered the pool: 8 does not come back
		}},
		{"lowered maxReplicas caps at once", 10 * time.Second, nil, []step{
			{0, 0, 9, 10, nil, 9, ReasonDesiredWithinRange},
			{1, 9, 3, 4, nil, 4, ReasonTooManyReplicas},
			{2, 4, 3, 10, nil, 4, ReasonScaleDownStabilize},
		}},
		{"lowered maxReplicas caps a held failure at once", 10 * time.Second, nil, []step{
			{0, 0, 9, 10, nil, 9, ReasonDesiredWithinRange},
			{1, 9, 0, 2, down, 2, ReasonTooManyReplicas},
		}},
		{"failures are not recorded", 10 * time.Second, nil, []step{
			{0, 0, 2, 10, nil, 2, ReasonDesiredWithinRange},
			{11, 2, 0, 10, down, 2, ""},
			{12, 2, 0, 10, nil, 0, ReasonDesiredWithinRange},
		}},
		{"zero window: off", 0, nil, []step{
			{0, 0, 5, 10, nil, 5, ReasonDesiredWithinRange},
			{1, 5, 0, 10, nil, 0, ReasonDesiredWithinRange},
		}},
		{"behavior with a zero down window: off", 10 * time.Second,
			&Behavior{ScaleDown: ScalingRules{StabilizationWindow: &zero}}, []step{
				{0, 0, 2, 10, nil, 2, ReasonDesiredWithinRange},
				{1, 2, 0, 10, nil, 0, ReasonDesiredWithinRange},
			}},
		{"behavior's own window replaces the default", 10 * time.Second,
			&Behavior{ScaleDown: ScalingRules{StabilizationWindow: &long}}, []step{
				{0, 0, 2, 10, nil, 2, ReasonDesiredWithinRange},
				{30, 2, 0, 10, nil, 2, anyReason},
				{61, 2, 0, 10, nil, 0, ReasonDesiredWithinRange},
			}},
		{"behavior without a down window gets the default, not 300 s", 10 * time.Second,
			&Behavior{ScaleUp: ScalingRules{StabilizationWindow: &zero}}, []step{
				{0, 0, 2, 10, nil, 2, ReasonDesiredWithinRange},
				{5, 2, 0, 10, nil, 2, anyReason},
				{11, 2, 0, 10, nil, 0, ReasonDesiredWithinRange},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := QWorkerDefaults(0, 10, 1)
			p.DownWindow, p.Behavior = tc.window, tc.behavior
			var m QWorkerMemory
			for i, s := range tc.steps {
				p.Sizing.MaxReplicas = s.max
				got := m.Settle(t0.Add(secs(s.sec)), p, s.prev, s.raw, s.err)
				if got.Desired != s.want || (s.why != anyReason && got.Why != s.why) {
					t.Fatalf("step %d (t=%ds prev %d raw %d max %d err %v): %+v, want %d (%q)",
						i, s.sec, s.prev, s.raw, s.max, s.err, got, s.want, s.why)
				}
			}
		})
	}
}

// anyReason skips the reason check: the Normalizer names a hold at the
// current count DesiredWithinRange, as the HPA does.
const anyReason Reason = "any"

// A restarted controller starts from the pods that exist: its first low
// reading does not retire them either.
func TestQWorkerSettleFirstDecisionCountsThePodsItStartsFrom(t *testing.T) {
	p := QWorkerDefaults(0, 10, 1)
	var m QWorkerMemory
	if got := m.Settle(t0, p, 6, 0, nil); got.Desired != 6 {
		t.Fatalf("first decision on an empty queue with 6 pods: %+v, want 6 held", got)
	}
	if got := m.Settle(t0.Add(p.DownWindow+time.Second), p, 6, 0, nil); got.Desired != 0 {
		t.Fatalf("after the window: %+v, want 0", got)
	}
}

// The default history stays bounded however often the queue is measured:
// one entry per distinct count at most.
func TestQWorkerSettleHistoryStaysBounded(t *testing.T) {
	p := QWorkerDefaults(0, 20, 1)
	p.DownWindow = time.Hour
	var m QWorkerMemory
	prev := int32(0)
	for i := range 100_000 {
		raw := int32(20 - i%21) // falling saw-tooth: the worst case for a max window
		prev = m.Settle(t0.Add(time.Duration(i)*time.Millisecond), p, prev, raw, nil).Desired
	}
	if n := m.down.Len(); n > 21 {
		t.Fatalf("history holds %d entries after 100,000 decisions, want at most 21 (one per count 0..20)", n)
	}
}
