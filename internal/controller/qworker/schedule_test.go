package qworker

import (
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/swell-autoscaler/swell/pkg/policy"
	"github.com/swell-autoscaler/swell/pkg/source"
)

func TestScheduleDue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const key = "sc\x00q\x00Cooperative"
	cases := []struct {
		name        string
		s           *measureSchedule
		at          time.Duration
		wantTrigger string
		wantWait    time.Duration
	}{
		{"first pass measures", &measureSchedule{}, 0, triggerSpec, 0},
		{"queue changed measures anew", &measureSchedule{started: t0, sourceKey: "other"}, 300 * time.Millisecond, triggerSpec, 0},
		{"pod event mid-interval acts on the last measurement", &measureSchedule{started: t0, sourceKey: key}, 400 * time.Millisecond, "", 600 * time.Millisecond},
		{"interval passed: poll", &measureSchedule{started: t0, sourceKey: key}, time.Second, triggerPoll, 0},
		{"push while pool at zero measures early", &measureSchedule{started: t0, sourceKey: key, pushPending: true, pushAllowed: true}, 300 * time.Millisecond, triggerPush, 0},
		{"push inside the minimum gap waits for it", &measureSchedule{started: t0, sourceKey: key, pushPending: true, pushAllowed: true}, 100 * time.Millisecond, "", 150 * time.Millisecond},
		{"push on a steady pool is ignored", &measureSchedule{started: t0, sourceKey: key, pushPending: true}, 300 * time.Millisecond, "", 700 * time.Millisecond},
		{"push while the source fails is ignored", &measureSchedule{started: t0, sourceKey: key, pushPending: true, pushAllowed: true, failing: true}, 300 * time.Millisecond, "", 700 * time.Millisecond},
		{"measurement in flight: nothing new", &measureSchedule{started: t0, sourceKey: key, inflight: true}, 2 * time.Second, "", time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			trig, wait := c.s.due(t0.Add(c.at), time.Second, key)
			if trig != c.wantTrigger || (trig == "" && wait != c.wantWait) {
				t.Fatalf("due = %q, %s; want %q, %s", trig, wait, c.wantTrigger, c.wantWait)
			}
		})
	}
}

func TestWakeOnlyWhenAllowed(t *testing.T) {
	cases := []struct {
		name string
		d    decision
		fail bool
		want bool
	}{
		{"pool at zero", decision{Desired: 0, Previous: 0}, false, true},
		{"pool grew (backlog jumped)", decision{Desired: 8, Previous: 3}, false, true},
		{"steady pool", decision{Desired: 8, Previous: 8}, false, false},
		{"shrinking pool", decision{Desired: 3, Previous: 8}, false, false},
		{"source failing", decision{Desired: 0, Previous: 0}, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &measureSchedule{}
			s.remember(c.d, 1, source.Sample{})
			s.failing = c.fail
			if got := s.wake(); got != c.want {
				t.Fatalf("wake = %v, want %v", got, c.want)
			}
		})
	}
}

func TestBrokerBackoff(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		n        int
		interval time.Duration
		want     time.Duration
	}{
		{1, time.Second, time.Second},
		{2, time.Second, 2 * time.Second},
		{3, time.Second, 4 * time.Second},
		{4, time.Second, 4 * time.Second}, // capped at 4 intervals
		{9, 30 * time.Second, 120 * time.Second},
		{20, 30 * time.Second, 120 * time.Second},
	} {
		if got := brokerBackoffDelay(c.n, c.interval); got != c.want {
			t.Errorf("brokerBackoffDelay(%d, %s) = %s, want %s", c.n, c.interval, got, c.want)
		}
	}
	b := &brokerBackoff{}
	dead := errors.New("i/o timeout")
	b.record(t0, time.Second, dead)
	if err := b.check(t0.Add(500 * time.Millisecond)); !errors.Is(err, errBackingOff) || !errors.Is(err, dead) {
		t.Fatalf("within the back-off: %v, want the last error marked as backing off", err)
	}
	if err := b.check(t0.Add(time.Second)); err != nil {
		t.Fatalf("back-off over: %v", err)
	}
	b.record(t0.Add(time.Second), time.Second, dead)
	if err := b.check(t0.Add(2500 * time.Millisecond)); err == nil {
		t.Fatal("second failure must back off 2 s")
	}
	b.record(t0.Add(3*time.Second), time.Second, nil)
	if err := b.check(t0.Add(3 * time.Second)); err != nil {
		t.Fatalf("a success resets the back-off: %v", err)
	}
}

// TestFallbackCountsFailedPolls drives the schedule and the decision with
// events every 50 ms (pod events, push wake-ups) during a scale-up to 40
// pods, and a broker outage of the given length: fallback.failureThreshold
// counts failed polls over time, so a short blip holds the pool.
func TestFallbackCountsFailedPolls(t *testing.T) {
	cases := []struct {
		name         string
		outage       time.Duration
		wantFallback bool
	}{
		{"200 ms blip holds the pool", 200 * time.Millisecond, false},
		{"1.5 s outage (two failed polls) holds the pool", 1500 * time.Millisecond, false},
		{"3.5 s outage (three failed polls) falls back", 3500 * time.Millisecond, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := workerSpec{
				Key: types.NamespacedName{Namespace: "ns", Name: "w"}, ScalerConfig: "sc", Queue: "q",
				Retirement: RetireCooperative, PollingInterval: time.Second,
				Sizing:   policy.QueueSizing{MaxReplicas: 100, ScalingFactor: 1},
				Fallback: policy.Fallback{FailureThreshold: 3, Replicas: 2},
			}
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			outageFrom := t0.Add(2100 * time.Millisecond)
			s, st := &measureSchedule{}, &workerState{}
			fellBack, measured := false, 0
			lowest := int32(-1)
			for step := time.Duration(0); step < 8*time.Second; step += 50 * time.Millisecond {
				now := t0.Add(step)
				s.wake() // a push wake-up with every event
				trig, _ := s.due(now, spec.PollingInterval, sourceKeyOf(spec))
				if trig == "" {
					continue // a pass acting on the last decision
				}
				measured++
				s.started, s.sourceKey, s.pushPending = now, sourceKeyOf(spec), false
				var err error
				if !now.Before(outageFrom) && now.Before(outageFrom.Add(c.outage)) {
					err = errors.New("connection reset")
				}
				s.failing = err != nil
				d := st.decide(now, spec, st.desired, source.Sample{Backlog: 40, Ready: 40}, err)
				s.remember(d, 1, source.Sample{})
				if d.FallingBack && d.Desired == 2 {
					fellBack = true
				}
				if step > 2*time.Second && (lowest < 0 || d.Desired < lowest) {
					lowest = d.Desired
				}
			}
			if fellBack != c.wantFallback {
				t.Fatalf("fell back to fallback.replicas: %v, want %v (lowest desired after the scale-up %d, %d measurements)", fellBack, c.wantFallback, lowest, measured)
			}
			if !c.wantFallback && lowest != 40 {
				t.Fatalf("pool dropped to %d during the outage, want 40 held", lowest)
			}
			// 8 s of events every 50 ms: at most one measurement per interval
			// plus early ones while the pool grew.
			if measured > 8+3 {
				t.Fatalf("%d measurements in 8 s at a 1 s interval", measured)
			}
		})
	}
}
