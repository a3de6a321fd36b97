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
