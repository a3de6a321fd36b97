package policy

import (
	"math"
	"testing"
	"time"
)

func FuzzQueueSizingWithinBounds(f *testing.F) {
	f.Add(int32(0), int32(10), 0.1, int64(30), int64(2), int64(0), true)
	f.Add(int32(1), int32(1), 1e300, int64(math.MaxInt64), int64(math.MaxInt64), int64(5), false)
	f.Add(int32(2), int32(5), math.NaN(), int64(-1), int64(-7), int64(-3), true)
	f.Fuzz(func(t *testing.T, lo, hi int32, factor float64, queued, inflight, activation int64, countInFlight bool) {
		q := QueueSizing{MinReplicas: lo, MaxReplicas: hi, ScalingFactor: factor, ActivationThreshold: activation, CountInFlight: countInFlight}
		got := q.Desired(QueueSample{Queued: queued, InFlight: inflight})
		if q.Validate() != nil {
			if got < 0 {
				t.Fatalf("invalid config %+v gave negative replicas %d", q, got)
			}
			return
		}
		if got < lo || got > hi {
			t.Fatalf("Desired = %d outside [%d, %d] for %+v", got, lo, hi, q)
		}
	})
}

// FuzzHPAWithinBounds drives an HPA through a few reconciles with arbitrary
// metrics and behaviour and checks every decision stays within [min, max].
func FuzzHPAWithinBounds(f *testing.F) {
	f.Add(int32(1), int32(10), int32(3), int64(5000), int64(12000), int32(4), int64(15), uint8(0), int32(100), int64(900), int64(0))
	f.Add(int32(0), int32(1), int32(0), int64(1), int64(math.MaxInt64/2), int32(-3), int64(0), uint8(7), int32(1), int64(-5), int64(1))
	f.Fuzz(func(t *testing.T, lo, hi, current int32, target, value int64, policyValue int32, periodSec int64, sel uint8, util int32, windowSec, stepSec int64) {
		spec := HPASpec{MinReplicas: lo, MaxReplicas: hi, Behavior: Behavior{
			ScaleUp:   ScalingRules{SelectPolicy: []SelectPolicy{SelectMax, SelectMin, SelectDisabled}[int(sel)%3], Policies: []ScalingPolicy{{Type: PodsPolicy, Value: policyValue, Period: time.Duration(periodSec) * time.Second}}},
			ScaleDown: ScalingRules{StabilizationWindow: window(time.Duration(windowSec%3600) * time.Second), Policies: []ScalingPolicy{{Type: PercentPolicy, Value: policyValue, Period: time.Duration(periodSec) * time.Second}}},
		}}
		if spec.Validate() != nil || current < 0 || current > 1<<20 {
			return
		}
		h := NewHPA(spec)
		now := t0
		pods := make([]PodMetric, min(current, 50))
		for i := range pods {
			pods[i] = PodMetric{Phase: PodRunning, HasMetric: i%3 != 0, Milli: value / int64(i+1), RequestMilli: 1000, Unready: i%4 == 1}
		}
		metrics := []MetricInput{
			{Source: ExternalMetric, Target: Target{Type: AverageValueTarget, Milli: target}, ExternalMilli: []int64{value}},
			{Source: ObjectMetric, Target: Target{Type: ValueTarget, Milli: target}, Milli: value},
			{Source: ResourceMetric, CPU: true, Target: Target{Type: UtilizationTarget, Utilization: util}, Pods: pods},
		}
		for range 5 {
			d := h.Decide(now, current, PodCounts{Total: current, Ready: current}, metrics)
			if current == 0 && lo > 0 {
				if d.Replicas != 0 {
					t.Fatalf("autoscaling disabled at zero but got %d", d.Replicas)
				}
				return
			}
			if d.Replicas < lo || d.Replicas > hi {
				t.Fatalf("Decide = %+v outside [%d, %d] from current %d", d, lo, hi, current)
			}
			h.Scaled(now, current, d.Replicas)
			current = d.Replicas
			now = now.Add(time.Duration(stepSec%600) * time.Second)
		}
	})
}

func FuzzFreeSlotsNeverNegative(f *testing.F) {
	f.Add(int64(8000), int64(1000), int64(2000), int64(64), int64(4), int64(1), false)
	f.Add(int64(-1), int64(math.MaxInt64), int64(0), int64(math.MinInt64), int64(-4), int64(0), true)
	f.Fuzz(func(t *testing.T, allocCPU, reqCPU, slotCPU, allocMem, slotMem, inUse int64, cordoned bool) {
		node := NodeCapacity{Name: "n", Allocatable: Resources{"cpu": allocCPU, "memory": allocMem}, Requested: Resources{"cpu": reqCPU}, Cordoned: cordoned}
		slot := Resources{"cpu": slotCPU, "memory": slotMem}
		free := FreeSlots(node, slot)
		if free < 0 {
			t.Fatalf("FreeSlots = %d < 0", free)
		}
		plan := PlanBuffer([]NodeCapacity{node}, slot, inUse, Buffer{Absolute: 1, Percent: 10}, node.Allocatable)
		if plan.AddNodes < 0 || plan.Wanted < 0 {
			t.Fatalf("PlanBuffer = %+v has negative counts", plan)
		}
	})
}

func FuzzDownscaleStabilizerNeverBelowDesired(f *testing.F) {
	f.Add(int64(60), []byte{3, 9, 1, 0, 7})
	f.Fuzz(func(t *testing.T, windowSec int64, decisions []byte) {
		s := DownscaleStabilizer{Window: time.Duration(windowSec%86400) * time.Second}
		var peak int32
		for i, d := range decisions {
			got := s.Stabilize(t0.Add(time.Duration(i)*time.Second), int32(d))
			peak = max(peak, int32(d))
			if got < int32(d) || got > peak {
				t.Fatalf("step %d: Stabilize(%d) = %d, want within [%d, %d]", i, d, got, d, peak)
			}
		}
	})
}
