package policy

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// pods builds WorkerPods from compact specs: "name:hash:ready|notready[:retiring|terminating|pending]",
// created one second apart in the order given (later = newer).
func pods(specs ...string) []WorkerPod {
	base := time.Unix(1_700_000_000, 0)
	out := make([]WorkerPod, 0, len(specs))
	for i, s := range specs {
		var name, hash, ready, state string
		parts := splitColon(s)
		name, hash, ready = parts[0], parts[1], parts[2]
		if len(parts) > 3 {
			state = parts[3]
		}
		out = append(out, WorkerPod{
			Name: name, Hash: hash, Ready: ready == "ready",
			Retiring: state == "retiring", Terminating: state == "terminating", NeverStarted: state == "pending",
			Created: base.Add(time.Duration(i) * time.Second),
		})
	}
	return out
}

func splitColon(s string) []string {
	var parts []string
	start := 0
	for i := range len(s) {
		if s[i] == ':' {
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func TestPlanPool(t *testing.T) {
	cases := []struct {
		name       string
		pods       []WorkerPod
		target     PoolTarget
		wantCreate int32
		wantRetire []string
	}{
		{"empty pool scales up at once", nil, PoolTarget{Desired: 5, Hash: "h1", MaxSurge: 1}, 5, nil},
		{"steady state does nothing", pods("a:h1:ready", "b:h1:ready"), PoolTarget{Desired: 2, Hash: "h1", MaxSurge: 1}, 0, nil},
		{"scale up fills the gap", pods("a:h1:ready"), PoolTarget{Desired: 4, Hash: "h1", MaxSurge: 1}, 3, nil},
		{"scale down retires exactly the excess, newest first", pods("a:h1:ready", "b:h1:ready", "c:h1:ready", "d:h1:ready"),
			PoolTarget{Desired: 2, Hash: "h1", MaxSurge: 1}, 0, []string{"d", "c"}},
		{"scale down retires not-ready pods first", pods("a:h1:ready", "b:h1:notready", "c:h1:ready"),
			PoolTarget{Desired: 2, Hash: "h1", MaxSurge: 1}, 0, []string{"b"}},
		{"scale down retires never-started pods before not-ready ones that ran", pods("c:h1:notready:pending", "b:h1:notready", "a:h1:ready"),
			PoolTarget{Desired: 2, Hash: "h1", MaxSurge: 1}, 0, []string{"c"}},
		{"scale to zero retires everything", pods("a:h1:ready", "b:h1:notready"),
			PoolTarget{Desired: 0, Hash: "h1"}, 0, []string{"b", "a"}},
		{"retiring pods do not count and are not chosen twice", pods("a:h1:ready", "b:h1:ready", "c:h1:ready:retiring"),
			PoolTarget{Desired: 2, Hash: "h1", MaxSurge: 1}, 0, nil},
		{"terminating pods are replaced", pods("a:h1:ready", "b:h1:ready:terminating"),
			PoolTarget{Desired: 2, Hash: "h1", MaxSurge: 0}, 1, nil},
		{"rollout starts with one surge pod", pods("a:h0:ready", "b:h0:ready", "c:h0:ready"),
			PoolTarget{Desired: 3, Hash: "h1", MaxSurge: 1}, 1, nil},
		{"rollout waits while the new pod is not ready", pods("a:h0:ready", "b:h0:ready", "c:h0:ready", "n1:h1:notready"),
			PoolTarget{Desired: 3, Hash: "h1", MaxSurge: 1}, 0, nil},
		{"rollout retires an old pod once a new one is ready", pods("a:h0:ready", "b:h0:ready", "c:h0:ready", "n1:h1:ready"),
			PoolTarget{Desired: 3, Hash: "h1", MaxSurge: 1}, 0, []string{"c"}},
		{"rollout waits for the retiring pod to leave before surging again", pods("a:h0:ready", "b:h0:ready", "c:h0:ready:retiring", "n1:h1:ready"),
			PoolTarget{Desired: 3, Hash: "h1", MaxSurge: 1}, 0, nil},
		{"rollout continues after the retiree left", pods("a:h0:ready", "b:h0:ready", "n1:h1:ready"),
			PoolTarget{Desired: 3, Hash: "h1", MaxSurge: 1}, 1, nil},
		{"rollout with scale-down retires outdated first", pods("a:h0:ready", "b:h0:ready", "c:h0:ready", "n1:h1:notready"),
			PoolTarget{Desired: 1, Hash: "h1", MaxSurge: 1}, 0, []string{"c", "b"}},
		{"rollout with scale-up fills the gap and replaces within the surge", pods("a:h0:ready"),
			PoolTarget{Desired: 4, Hash: "h1", MaxSurge: 1}, 4, nil},
		{"not-ready outdated pods retire without waiting", pods("a:h0:notready", "b:h1:ready", "c:h1:ready"),
			PoolTarget{Desired: 2, Hash: "h1", MaxSurge: 1}, 0, []string{"a"}},
		{"negative desired is treated as zero", pods("a:h1:ready"), PoolTarget{Desired: -3, Hash: "h1"}, 0, []string{"a"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := PlanPool(c.pods, c.target)
			if got.Create != c.wantCreate || !slices.Equal(got.Retire, c.wantRetire) {
				t.Fatalf("PlanPool = create %d retire %v; want create %d retire %v", got.Create, got.Retire, c.wantCreate, c.wantRetire)
			}
		})
	}
}

// TestPlanPoolRolloutConverges drives a whole rollout step by step: every
// pod ends on the new hash, the pool never drops below Desired ready pods
// once it had them, and never runs more than Desired+MaxSurge pods.
func TestPlanPoolRolloutConverges(t *testing.T) {
	const desired, surge = 5, 2
	state := pods("a:h0:ready", "b:h0:ready", "c:h0:ready", "d:h0:ready", "e:h0:ready")
	target := PoolTarget{Desired: desired, Hash: "h1", MaxSurge: surge}
	next := 0
	for step := 0; step < 100; step++ {
		plan := PlanPool(state, target)
		if plan.Create == 0 && len(plan.Retire) == 0 && plan.Outdated == 0 && countDraining(state) == 0 {
			if plan.Active != desired {
				t.Fatalf("converged with %d active pods, want %d", plan.Active, desired)
			}
			return
		}
		for _, name := range plan.Retire {
			for i := range state {
				if state[i].Name == name {
					state[i].Retiring = true
				}
			}
		}
		for range plan.Create {
			state = append(state, WorkerPod{Name: fmt.Sprintf("n%d", next), Hash: "h1", Created: time.Unix(int64(2_000_000_000+next), 0)})
			next++
		}
		if alive := int32(len(state)); alive > desired+surge {
			t.Fatalf("step %d: %d pods alive, more than desired+surge %d", step, alive, desired+surge)
		}
		if r := readyActive(state); r < desired && step > 0 {
			t.Fatalf("step %d: only %d ready active pods, want >= %d", step, r, desired)
		}
		// The world moves: new pods become ready, retiring pods finish.
		kept := state[:0]
		for _, p := range state {
			if p.Retiring {
				continue
			}
			p.Ready = true
			kept = append(kept, p)
		}
		state = kept
	}
	t.Fatalf("rollout did not converge in 100 steps; pods: %+v", state)
}

func countDraining(ps []WorkerPod) int {
	n := 0
	for _, p := range ps {
		if p.Retiring || p.Terminating {
			n++
		}
	}
	return n
}

func readyActive(ps []WorkerPod) int32 {
	var n int32
	for _, p := range ps {
		if p.Ready && !p.Retiring && !p.Terminating {
			n++
		}
	}
	return n
}

func FuzzPlanPoolNeverRetiresMoreThanExcess(f *testing.F) {
	f.Add(uint8(5), uint8(3), uint8(1), uint16(0b1011), uint16(0b0110), uint16(0b0001))
	f.Fuzz(func(t *testing.T, n, desired, surge uint8, readyBits, outdatedBits, drainingBits uint16) {
		n %= 16
		var ps []WorkerPod
		for i := range n {
			hash := "h1"
			if outdatedBits&(1<<i) != 0 {
				hash = "h0"
			}
			ps = append(ps, WorkerPod{Name: fmt.Sprint(i), Hash: hash, Ready: readyBits&(1<<i) != 0,
				Retiring: drainingBits&(1<<i) != 0, Created: time.Unix(int64(i), 0)})
		}
		plan := PlanPool(ps, PoolTarget{Desired: int32(desired % 20), Hash: "h1", MaxSurge: int32(surge % 5)})
		excess := max(plan.Active-int32(desired%20), 0)
		if int32(len(plan.Retire)) > excess {
			t.Fatalf("retired %d pods, excess was %d", len(plan.Retire), excess)
		}
		if plan.Create < 0 {
			t.Fatalf("negative creation %d", plan.Create)
		}
		if plan.Create > 0 && len(plan.Retire) > 0 && plan.Active-int32(len(plan.Retire))+plan.Create > int32(desired%20)+int32(surge%5) {
			t.Fatalf("plan both creates %d and retires %v beyond the surge", plan.Create, plan.Retire)
		}
	})
}
