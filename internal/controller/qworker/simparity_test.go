package qworker

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/policy"
	"github.com/swell-autoscaler/swell/pkg/sim"
	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/stats"
)

// TestSimulatorRunsTheControllersDecision proves `swell simulate`'s swell
// policy is this controller's decision on a QWorker's defaults: a QWorker
// with only QScaler's fields decodes to exactly the policy and polling
// interval the simulator runs, and the controller's decide gives the same
// count as pkg/policy's decision (the one the simulator calls) on every
// step of a random run.
func TestSimulatorRunsTheControllersDecision(t *testing.T) {
	sc := &sim.Scenario{Name: "parity", Duration: sim.Duration(time.Hour),
		Workload: sim.Workload{Rate: 1, Service: sim.Service{Mean: sim.Duration(time.Second)}},
		Workers:  sim.Workers{Concurrency: 2, MinReplicas: 0, MaxReplicas: 40}}
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	simPolicy, simInterval := sim.QWorkerPolicy(sc)
	qw := &QWorker{Spec: qv1.QWorkerSpec{ScaleConfig: qv1.ScaleConfig{ScalerConfigRef: "redis", Queue: "tasks",
		MinReplicas: sc.Workers.MinReplicas, MaxReplicas: sc.Workers.MaxReplicas, ScalingFactor: simPolicy.Sizing.ScalingFactor}}}
	spec, err := decodeSpec(qw)
	if err != nil {
		t.Fatal(err)
	}
	if got := qworkerPolicy(spec); !reflect.DeepEqual(got, simPolicy) {
		t.Fatalf("controller decodes a default QWorker to %+v, the simulator runs %+v", got, simPolicy)
	}
	if spec.PollingInterval != simInterval {
		t.Fatalf("controller polls every %v, the simulator every %v", spec.PollingInterval, simInterval)
	}

	st := &workerState{}
	var mem policy.QWorkerMemory
	desired := simPolicy.Initial(0)
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Unix(0, 0)
	for i := range 500 {
		now = now.Add(spec.PollingInterval)
		ready, inFlight := int64(rng.IntN(60)), int64(rng.IntN(30))
		var measureErr error
		if i%17 == 5 {
			measureErr = errFake
			ready, inFlight = 0, 0
		}
		d := st.decide(now, spec, desired, source.Sample{Ready: ready, InFlight: inFlight, Backlog: ready + inFlight}, measureErr)
		want := mem.Settle(now, simPolicy, desired, simPolicy.Ratio(policy.QueueReading{Ready: ready, InFlight: inFlight, Backlog: ready + inFlight}), measureErr).Desired
		if d.Desired != want {
			t.Fatalf("step %d (ready %d, in flight %d, err %v): controller %d, pkg/policy %d", i, ready, inFlight, measureErr, d.Desired, want)
		}
		desired = want
	}
}

var errFake = fakeErr("broker unreachable")

type fakeErr string

func (e fakeErr) Error() string { return string(e) }

// TestSimulatorRunsTheControllersWaitTarget is the same proof for the
// swell-wait policy: a QWorker with only targetWaitSeconds beyond
// QScaler's fields decodes to the policy, wait target and polling interval
// the simulator runs, and the controller's decide (pod reports, start-ups,
// wait target, fallback) gives the same count as pkg/policy's
// WaitMemory.Size then QWorkerMemory.Settle (the calls the simulator
// makes) on every step of a random run that passes through the model, the
// hold while it is unknown, idleness and failed measurements.
func TestSimulatorRunsTheControllersWaitTarget(t *testing.T) {
	sc := &sim.Scenario{Name: "parity-wait", Duration: sim.Duration(time.Hour),
		Workload: sim.Workload{Rate: 1, Service: sim.Service{Mean: sim.Duration(time.Second)}},
		Workers:  sim.Workers{Concurrency: 2, MinReplicas: 0, MaxReplicas: 40}}
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	simPolicy, simTarget, simInterval := sim.QWorkerWaitPolicy(sc)
	wait := simTarget.Wait.Seconds()
	qw := &QWorker{Spec: qv1.QWorkerSpec{ScaleConfig: qv1.ScaleConfig{ScalerConfigRef: "redis", Queue: "tasks",
		MinReplicas: sc.Workers.MinReplicas, MaxReplicas: sc.Workers.MaxReplicas, ScalingFactor: simPolicy.Sizing.ScalingFactor,
		TargetWaitSeconds: &wait}}}
	spec, err := decodeSpec(qw)
	if err != nil {
		t.Fatal(err)
	}
	if got := qworkerPolicy(spec); !reflect.DeepEqual(got, simPolicy) {
		t.Fatalf("controller decodes a wait-target QWorker to %+v, the simulator runs %+v", got, simPolicy)
	}
	if spec.WaitTarget == nil || *spec.WaitTarget != simTarget || spec.PollingInterval != simInterval {
		t.Fatalf("controller: target %+v every %v; the simulator: %+v every %v", spec.WaitTarget, spec.PollingInterval, simTarget, simInterval)
	}

	st := &workerState{}
	var (
		mem     policy.QWorkerMemory
		waitMem policy.WaitMemory
		tasks   int64
		busy    float64
		states  = map[policy.WaitState]int{}
	)
	var desired int32
	rng := rand.New(rand.NewPCG(3, 4))
	now := time.Unix(0, 0)
	for i := range 600 {
		now = now.Add(spec.PollingInterval)
		// Passes 0-39 of every 120 are idle (an empty queue, no task
		// finished): a minute of it sends the pool to min.
		var ready, inFlight int64
		if i%120 >= 40 {
			done := rng.IntN(20)
			tasks += int64(done)
			busy += float64(done) * (0.5 + rng.Float64())
			ready, inFlight = int64(rng.IntN(60)), int64(rng.IntN(30))
		}
		var startups []time.Duration
		for range rng.IntN(3) {
			startups = append(startups, time.Duration(1+rng.IntN(30))*time.Second)
		}
		active := int32(rng.IntN(int(sc.Workers.MaxReplicas) + 1))
		if i == 0 {
			desired = simPolicy.Initial(active) // the first decision starts from the pods that exist
		}
		var measureErr error
		if i%17 == 5 {
			measureErr = errFake
			ready, inFlight = 0, 0
		}
		q := policy.QueueReading{Ready: ready, InFlight: inFlight, Backlog: ready + inFlight}
		st.wait.reading = workerReading{Pods: int(active), Startups: startups,
			Reports: map[string]stats.Report{"pod-0": {Tasks: tasks, BusySeconds: busy, Concurrency: int32(sc.Workers.Concurrency)}}}
		d := st.decide(now, spec, active, source.Sample{Ready: ready, InFlight: inFlight, Backlog: ready + inFlight}, measureErr)

		raw := simPolicy.Ratio(q)
		if measureErr == nil {
			sized := waitMem.Size(now, simPolicy, simTarget, simInterval, desired, policy.WaitReading{Queue: q,
				Completed: tasks, BusySeconds: busy, HasCompleted: true, Concurrency: int32(sc.Workers.Concurrency), Startups: startups, Active: active})
			raw = sized.Raw
			states[sized.State]++
		}
		want := mem.Settle(now, simPolicy, desired, raw, measureErr).Desired
		if d.Desired != want {
			t.Fatalf("step %d (ready %d, in flight %d, %d tasks done, err %v): controller %d (%s), pkg/policy %d", i, ready, inFlight, tasks, measureErr, d.Desired, d.Reason, want)
		}
		desired = want
	}
	for _, s := range []policy.WaitState{policy.WaitModelled, policy.WaitUnknown, policy.WaitIdle} {
		if states[s] == 0 {
			t.Fatalf("the run never reached wait state %d (%v): the comparison does not cover it", s, states)
		}
	}
	t.Logf("passes by wait state (modelled, unknown, idle): %d, %d, %d", states[policy.WaitModelled], states[policy.WaitUnknown], states[policy.WaitIdle])
}
