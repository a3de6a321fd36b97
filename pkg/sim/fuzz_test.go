package sim

import (
	"math"
	"testing"
	"time"
)

// FuzzSimulateWithinBounds runs small random scenarios through every policy
// and checks the engine never panics, never sets replicas outside [min, max]
// and never reports a negative wait.
func FuzzSimulateWithinBounds(f *testing.F) {
	f.Add(uint64(1), 0.5, 8.0, uint8(1), int32(0), int32(10), 20.0, 0.0, uint8(0), 5.0)
	f.Add(uint64(9), 5.0, 0.1, uint8(4), int32(2), int32(3), 0.0, 30.0, uint8(3), 0.0)
	f.Fuzz(func(t *testing.T, seed uint64, rate, svc float64, conc uint8, lo, hi int32, start, provision float64, podsPerNode uint8, window float64) {
		if !(rate > 0 && rate < 20) || !(svc > 0.01 && svc < 600) || conc == 0 || conc > 8 || lo < 0 || hi < 1 || hi > 200 || lo > hi ||
			!(start >= 0 && start < 600) || !(provision >= 0 && provision < 600) || !(window >= 0 && window < 600) {
			return
		}
		target := Duration((window + 0.5) * float64(time.Second))
		sc := &Scenario{Name: "fuzz", Duration: Duration(20 * time.Minute),
			Workload: Workload{Rate: rate, Bursts: &Bursts{Rate: 0.01, Alpha: 1.2, MinSize: 1, MaxSize: 300}, Service: Service{Mean: Duration(svc * float64(time.Second))}},
			Workers:  Workers{Concurrency: int(conc), StartLatency: Duration(start * float64(time.Second)), MinReplicas: lo, MaxReplicas: hi},
			Policies: PolicyConfig{SwellWait: SwellWaitConfig{TargetWait: target}}}
		if podsPerNode > 0 {
			sc.Nodes = &Nodes{PodsPerNode: int(podsPerNode), ProvisionLatency: Duration(provision * float64(time.Second))}
		}
		if err := sc.Validate(); err != nil {
			t.Fatalf("valid scenario rejected: %v", err)
		}
		results, err := Run(sc, AllPolicies, seed)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			floor := lo
			if r.Policy == PolicyHPACPU {
				floor = max(lo, 1)
			}
			if r.Policy == PolicyOracle {
				floor = 0
			}
			for _, p := range r.Series {
				if int32(p.Replicas) < floor || int32(p.Replicas) > hi {
					t.Fatalf("%s: %d replicas at %vs, outside [%d, %d]", r.Policy, p.Replicas, p.T, floor, hi)
				}
			}
			if r.WaitP50 < 0 || math.IsNaN(r.WaitP99) || r.PodSeconds < 0 {
				t.Fatalf("%s: negative or NaN figures: %+v", r.Policy, r)
			}
		}
	})
}
