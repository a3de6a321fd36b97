package waittime

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestReplicas(t *testing.T) {
	w5 := Target{Wait: 5 * time.Second}
	slow := 30 * time.Second // start-up longer than the target: Erlang C sizes a standing pool
	w60 := Target{Wait: time.Minute}
	steady, _ := ServersFor(2, 10*time.Second, 5*time.Second, 0.95, MaxServers)
	steadyDown, _ := ServersFor(2, 10*time.Second, 4*time.Second, 0.95, MaxServers)
	for _, tc := range []struct {
		name  string
		in    Inputs
		t     Target
		want  int
		known bool
	}{
		{"steady flow from zero", Inputs{ArrivalRate: 2, ServiceTime: 10 * time.Second, Concurrency: 1, StartupTime: slow}, w5, steady, true},
		{"concurrency packs slots", Inputs{ArrivalRate: 2, ServiceTime: 10 * time.Second, Concurrency: 4, StartupTime: slow}, w5, (steady + 3) / 4, true},
		// 100 tasks × 10 s within max(60−20, 30) = 40 s: 25 slots.
		{"backlog from zero drains within W minus start-up", Inputs{ServiceTime: 10 * time.Second, Concurrency: 1, Backlog: 100, StartupTime: 20 * time.Second}, w60, 25, true},
		// Start-up 50 s of a 60 s target: horizon floors at W/2 = 30 s → 34.
		{"slow start-up floors at W/2", Inputs{ServiceTime: 10 * time.Second, Concurrency: 1, Backlog: 100, StartupTime: 50 * time.Second}, w60, 34, true},
		// Oldest task 120 s old, target 60 s: horizon 40 s × ½ = 20 s → 50.
		{"late backlog drains faster", Inputs{ServiceTime: 10 * time.Second, Concurrency: 1, Backlog: 100, StartupTime: 20 * time.Second, OldestAge: 2 * time.Minute}, w60, 50, true},
		// 30 idle workers drain 10 tasks in one round; scale-down keeps
		// ceil(10×10/48) = 3 under 0.8 × 60 s.
		{"idle pool shrinks to what drains the backlog", Inputs{ServiceTime: 10 * time.Second, Concurrency: 1, Backlog: 10, Current: 30}, w60, 3, true},
		{"in-flight tasks hold their workers", Inputs{ServiceTime: 10 * time.Second, Concurrency: 2, InFlight: 7, Current: 10}, w60, 4, true},
		{"inside the band: hold", Inputs{ArrivalRate: 2, ServiceTime: 10 * time.Second, Concurrency: 1, Current: steadyDown, StartupTime: slow}, w5, steadyDown, true},
		{"above the band: shrink to its edge", Inputs{ArrivalRate: 2, ServiceTime: 10 * time.Second, Concurrency: 1, Current: steadyDown + 9, StartupTime: slow}, w5, steadyDown, true},
		// A worker starts within the 60 s target: no standing reserve, only
		// what the queue needs; 100 × 10 s within 60 − 20 − 5 = 35 s → 29.
		{"on demand: steady flow, empty queue", Inputs{ArrivalRate: 2, ServiceTime: 10 * time.Second, Concurrency: 1, StartupTime: 20 * time.Second, PollInterval: 5 * time.Second}, w60, 0, true},
		{"on demand: backlog", Inputs{ArrivalRate: 2, ServiceTime: 10 * time.Second, Concurrency: 1, Backlog: 100, StartupTime: 20 * time.Second, PollInterval: 5 * time.Second}, w60, 29, true},
		{"on demand: busy workers stay", Inputs{ArrivalRate: 1, ServiceTime: 10 * time.Second, Concurrency: 1, InFlight: 12, Current: 15, StartupTime: 20 * time.Second, PollInterval: 5 * time.Second}, w60, 12, true},
		// 2/s sustained × 10 s keeps 20 workers busy on average: none of the 15 goes.
		{"on demand: the sustained rate's workers stay", Inputs{ArrivalRate: 2, SustainedRate: 2, ServiceTime: 10 * time.Second, Concurrency: 1, InFlight: 12, Current: 15, StartupTime: 20 * time.Second, PollInterval: 5 * time.Second}, w60, 15, true},
		// Between two lumps of 120 tasks a minute (2/s × 12 s / 2 slots):
		// queue empty, nothing in flight, yet 12 workers are needed again
		// by the next lump.
		{"on demand: lumps keep the sustained rate's workers", Inputs{ArrivalRate: 2, SustainedRate: 2, ServiceTime: 12 * time.Second, Concurrency: 2, Current: 20, StartupTime: 20 * time.Second, PollInterval: 5 * time.Second}, w60, 12, true},
		{"the sustained rate's workers do not grow the pool", Inputs{ArrivalRate: 2, SustainedRate: 2, ServiceTime: 12 * time.Second, Concurrency: 2, Current: 8, StartupTime: 20 * time.Second, PollInterval: 5 * time.Second}, w60, 8, true},
		// After a spike the smoothed rate (2/s) still remembers it, but
		// the sustained rate (0.5/s × 12 s / 2 = 3) says what stays.
		{"after a spike the floor follows the sustained rate", Inputs{ArrivalRate: 2, SustainedRate: 0.5, ServiceTime: 12 * time.Second, Concurrency: 2, Current: 20, StartupTime: 20 * time.Second, PollInterval: 5 * time.Second}, w60, 3, true},
		{"no sustained rate: no floor", Inputs{ArrivalRate: 2, ServiceTime: 12 * time.Second, Concurrency: 2, Current: 20, StartupTime: 20 * time.Second, PollInterval: 5 * time.Second}, w60, 0, true},
		{"NaN sustained rate: no floor", Inputs{ArrivalRate: 2, SustainedRate: math.NaN(), ServiceTime: 12 * time.Second, Concurrency: 2, Current: 20, StartupTime: 20 * time.Second, PollInterval: 5 * time.Second}, w60, 0, true},
		{"infinite sustained rate: no floor", Inputs{ArrivalRate: 2, SustainedRate: math.Inf(1), ServiceTime: 12 * time.Second, Concurrency: 2, Current: 20, StartupTime: 20 * time.Second, PollInterval: 5 * time.Second}, w60, 0, true},
		{"negative sustained rate: no floor", Inputs{ArrivalRate: 2, SustainedRate: -1, ServiceTime: 12 * time.Second, Concurrency: 2, Current: 20, StartupTime: 20 * time.Second, PollInterval: 5 * time.Second}, w60, 0, true},
		// The floor is capped by MaxReplicas: 2/s × 12 s / 2 = 12 > 5.
		{"the floor stays within MaxReplicas", Inputs{ArrivalRate: 2, SustainedRate: 2, ServiceTime: 12 * time.Second, Concurrency: 2, Current: 20, MaxReplicas: 5, StartupTime: 20 * time.Second, PollInterval: 5 * time.Second}, w60, 5, true},
		// 0.05/s × 5 s is a quarter of a worker: met on demand, not held.
		{"a trickle below one worker is not held", Inputs{ArrivalRate: 0.05, SustainedRate: 0.05, ServiceTime: 5 * time.Second, Concurrency: 1, Current: 3, StartupTime: 15 * time.Second, PollInterval: 5 * time.Second}, w60, 0, true},
		{"nothing to do", Inputs{ServiceTime: 10 * time.Second, Concurrency: 1, Current: 3}, w5, 0, true},
		{"capped", Inputs{ArrivalRate: 2, ServiceTime: 10 * time.Second, Concurrency: 1, MaxReplicas: 10, StartupTime: slow}, w5, 10, true},
		{"unknown service time holds", Inputs{ArrivalRate: 2, Concurrency: 1, Current: 7, Backlog: 1000}, w5, 7, false},
		{"NaN arrival rate holds", Inputs{ArrivalRate: math.NaN(), ServiceTime: time.Second, Current: 4}, w5, 4, false},
		{"infinite arrival rate holds", Inputs{ArrivalRate: math.Inf(1), ServiceTime: time.Second, Current: 4}, w5, 4, false},
		{"negative arrival rate holds", Inputs{ArrivalRate: -1, ServiceTime: time.Second, Current: 4}, w5, 4, false},
		{"bad target holds", Inputs{ArrivalRate: 1, ServiceTime: time.Second, Current: 2}, Target{}, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Replicas(tc.in, tc.t)
			if r.Replicas != tc.want || r.Known != tc.known {
				t.Fatalf("Replicas = %d (known %v), want %d (known %v); %s", r.Replicas, r.Known, tc.want, tc.known, r.Reason)
			}
			if r.Reason == "" {
				t.Fatal("no reason given")
			}
		})
	}
	if steadyDown <= steady {
		t.Fatalf("band is empty: steady %d, scale-down size %d", steady, steadyDown)
	}
}

// The prediction reported is the M/M/c quantile at the chosen size, and it
// meets the target whenever the pool is not capped.
func TestReplicasPredictionMeetsTarget(t *testing.T) {
	for _, lambda := range []float64{0.1, 1, 4.5, 30} {
		for _, conc := range []int{1, 3, 8} {
			tg := Target{Wait: 3 * time.Second, Percentile: 0.99}
			r := Replicas(Inputs{ArrivalRate: lambda, ServiceTime: 8 * time.Second, Concurrency: conc, StartupTime: 10 * time.Second}, tg)
			want := WaitQuantile(r.Replicas*conc, lambda, 8*time.Second, 0.99)
			if math.Abs(r.PredictedWait.Seconds()-want) > 1e-6 || r.PredictedWait > tg.Wait || r.Unbounded {
				t.Errorf("λ=%g conc=%d: %d workers predict %v (model %gs), target %v", lambda, conc, r.Replicas, r.PredictedWait, want, tg.Wait)
			}
		}
	}
	r := Replicas(Inputs{ArrivalRate: 2, ServiceTime: 10 * time.Second, Concurrency: 1, MaxReplicas: 10, StartupTime: 5 * time.Second}, Target{Wait: time.Second})
	if !r.Capped || !r.Unbounded || !strings.Contains(r.Reason, "maxReplicas") {
		t.Errorf("capped below the load: %+v", r)
	}
}

func TestTargetValidateNamesField(t *testing.T) {
	for _, tc := range []struct {
		t     Target
		field string
	}{
		{Target{Wait: 0}, "targetWaitSeconds"},
		{Target{Wait: time.Second, Percentile: 1}, "targetPercentile"},
		{Target{Wait: time.Second, Percentile: math.NaN()}, "targetPercentile"},
		{Target{Wait: time.Second, ScaleDownMargin: 2}, "scaleDownMargin"},
	} {
		err := tc.t.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.t, err, tc.field)
		}
	}
	if err := (Target{Wait: time.Second, Percentile: 0.9}).Validate(); err != nil {
		t.Errorf("valid target: %v", err)
	}
}

// OnDemand switches at StartupTime + PollInterval = W.
func TestOnDemandThreshold(t *testing.T) {
	in := Inputs{StartupTime: 20 * time.Second, PollInterval: 5 * time.Second}
	if !OnDemand(in, 25*time.Second) || OnDemand(in, 24*time.Second) {
		t.Fatal("OnDemand should hold exactly when start-up + poll fits in the target")
	}
	if OnDemand(Inputs{PollInterval: 5 * time.Second}, time.Hour) {
		t.Fatal("OnDemand with an unmeasured start-up time: want the Erlang reserve")
	}
}

// In the on-demand regime the prediction is the time to start the current
// backlog with the chosen pool, within the target by construction.
func TestOnDemandPrediction(t *testing.T) {
	tg := Target{Wait: time.Minute}
	in := Inputs{ArrivalRate: 2, ServiceTime: 10 * time.Second, Concurrency: 1, Backlog: 100, StartupTime: 20 * time.Second, PollInterval: 5 * time.Second}
	r := Replicas(in, tg)
	if r.Unbounded || r.PredictedWait <= 0 || r.PredictedWait > tg.Wait || r.SteadySlots != 0 {
		t.Fatalf("on-demand result %+v: want no steady slots and a bounded prediction within %v", r, tg.Wait)
	}
	in.Backlog = 0
	if r := Replicas(in, tg); r.PredictedWait > in.StartupTime+in.PollInterval || r.Unbounded {
		t.Fatalf("empty queue: %+v, want at most one start-up and poll", r)
	}
}
