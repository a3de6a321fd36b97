package nodepool

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// ready is a ready schedulable 4-slot node with pods servers of 1 slot.
func ready(name string, pods int) NodeState {
	return NodeState{
		Name: name, Ready: true,
		Allocatable: policy.Resources{"cpu": 4000},
		Requested:   policy.Resources{"cpu": int64(pods) * 1000},
		ServerPods:  pods,
	}
}

func booting(name string) NodeState {
	n := ready(name, 0)
	n.Ready = false
	return n
}

// swellCordoned is a node Swell cordoned at t0-age.
func swellCordoned(name string, pods int, age time.Duration) NodeState {
	n := ready(name, pods)
	n.Cordoned, n.SwellCordoned, n.CordonedAt = true, true, t0.Add(-age)
	if pods == 0 {
		n.EmptySince = n.CordonedAt
	}
	return n
}

func otherCordoned(name string, pods int) NodeState {
	n := ready(name, pods)
	n.Cordoned = true
	return n
}

func TestPlan(t *testing.T) {
	base := Input{
		Now:             t0,
		Slot:            policy.Resources{"cpu": 1000},
		Template:        policy.Resources{"cpu": 4000},
		Buffer:          policy.Buffer{Absolute: 4},
		Min:             1,
		Max:             10,
		EmptyNodeExpiry: time.Minute,
	}
	tests := []struct {
		name string
		in   func(Input) Input
		want Decision
		note string // substring expected in Notes
	}{
		{
			name: "buffer held: nothing to do",
			in:   func(in Input) Input { in.Nodes = []NodeState{ready("a", 0), ready("b", 4)}; return in },
			want: Decision{Size: 2, Ready: 2, Free: 4, InUse: 4, Wanted: 4},
		},
		{
			name: "below minimum grows to minimum",
			in:   func(in Input) Input { in.Min = 3; in.Nodes = []NodeState{ready("a", 0)}; return in },
			want: Decision{Resize: 3, Size: 1, Ready: 1, Free: 4, Wanted: 4},
		},
		{
			name: "empty pool with unknown template grows one node",
			in:   func(in Input) Input { in.Min = 0; in.Template = nil; return in },
			want: Decision{Resize: 1, Wanted: 4},
		},
		{
			name: "deficit adds whole template nodes",
			in:   func(in Input) Input { in.Nodes = []NodeState{ready("a", 3)}; return in },
			want: Decision{Resize: 2, Size: 1, Ready: 1, Free: 1, InUse: 3, Wanted: 4},
		},
		{
			name: "slots are counted per node: scattered free cpu is no slot",
			in: func(in Input) Input {
				a, b := ready("a", 0), ready("b", 0)
				a.Requested["cpu"], b.Requested["cpu"] = 3500, 3500
				in.Buffer = policy.Buffer{Absolute: 1}
				in.Nodes = []NodeState{a, b}
				return in
			},
			want: Decision{Resize: 3, Size: 2, Ready: 2, Wanted: 1},
		},
		{
			name: "slot is a vector: memory bound",
			in: func(in Input) Input {
				in.Slot = policy.Resources{"cpu": 1000, "memory": 4}
				in.Template = policy.Resources{"cpu": 4000, "memory": 8}
				a := ready("a", 0)
				a.Allocatable["memory"] = 8
				in.Nodes = []NodeState{a}
				return in
			},
			want: Decision{Resize: 2, Size: 1, Ready: 1, Free: 2, Wanted: 4},
		},
		{
			name: "pending server pods need slots on top of the buffer",
			in:   func(in Input) Input { in.PendingServerPods = 4; in.Nodes = []NodeState{ready("a", 0)}; return in },
			want: Decision{Resize: 2, Size: 1, Ready: 1, Free: 4, Wanted: 4},
		},
		{
			name: "percent buffer of slots in use",
			in: func(in Input) Input {
				in.Buffer = policy.Buffer{Percent: 50}
				in.Nodes = []NodeState{ready("a", 4), ready("b", 4), ready("c", 2)}
				return in
			},
			want: Decision{Resize: 4, Size: 3, Ready: 3, Free: 2, InUse: 10, Wanted: 5},
		},
		{
			name: "uncordon fullest cordoned first, before growing",
			in: func(in Input) Input {
				in.Nodes = []NodeState{ready("a", 4), swellCordoned("empty", 0, time.Hour), swellCordoned("busy", 2, time.Hour), swellCordoned("mid", 1, time.Hour)}
				return in
			},
			want: Decision{Uncordon: []string{"busy", "mid"}, Size: 4, Ready: 1, Cordoned: 3, Free: 5, InUse: 7, Wanted: 4,
				Delete: []string{"empty"}},
		},
		{
			name: "uncordon, then grow for the rest",
			in: func(in Input) Input {
				in.Buffer = policy.Buffer{Absolute: 8}
				in.Nodes = []NodeState{ready("a", 4), swellCordoned("c", 2, 0)}
				return in
			},
			want: Decision{Uncordon: []string{"c"}, Resize: 4, Size: 2, Ready: 1, Cordoned: 1, Free: 2, InUse: 6, Wanted: 8},
		},
		{
			name: "nodes cordoned by others are never uncordoned nor deleted",
			in: func(in Input) Input {
				in.Nodes = []NodeState{ready("a", 4), otherCordoned("x", 0)}
				return in
			},
			want: Decision{Resize: 3, Size: 2, Ready: 1, Cordoned: 1, InUse: 4, Wanted: 4},
		},
		{
			name: "booting nodes count toward size and incoming slots: no second resize",
			in: func(in Input) Input {
				in.Nodes = []NodeState{ready("a", 4), booting("b")}
				return in
			},
			want: Decision{Size: 2, Ready: 1, Booting: 1, InUse: 4, Wanted: 4, Incoming: 4},
		},
		{
			name: "cordoned nodes count toward size: growth starts from all nodes",
			in: func(in Input) Input {
				in.Nodes = []NodeState{ready("a", 4), otherCordoned("x", 4), otherCordoned("y", 4)}
				return in
			},
			want: Decision{Resize: 4, Size: 3, Ready: 1, Cordoned: 2, InUse: 12, Wanted: 4},
		},
		{
			name: "nodes the provider is still creating count as incoming",
			in: func(in Input) Input {
				in.ProviderSize = 2
				in.Nodes = []NodeState{ready("a", 4)}
				return in
			},
			want: Decision{Size: 2, Ready: 1, InUse: 4, Wanted: 4, Incoming: 4},
		},
		{
			name: "growth capped at maximum",
			in: func(in Input) Input {
				in.Max = 2
				in.Buffer = policy.Buffer{Absolute: 12}
				in.Nodes = []NodeState{ready("a", 4)}
				return in
			},
			want: Decision{Resize: 2, Size: 1, Ready: 1, InUse: 4, Wanted: 12},
			note: "capped at maximum-node-pool-size 2",
		},
		{
			name: "at maximum: no resize",
			in: func(in Input) Input {
				in.Max = 1
				in.Nodes = []NodeState{ready("a", 4)}
				return in
			},
			want: Decision{Size: 1, Ready: 1, InUse: 4, Wanted: 4},
			note: "capped",
		},
		{
			name: "cooldown holds a resize",
			in: func(in Input) Input {
				in.CooldownUntil = t0.Add(time.Second)
				in.Nodes = []NodeState{ready("a", 4)}
				return in
			},
			want: Decision{Size: 1, Ready: 1, InUse: 4, Wanted: 4},
			note: "cooldown until",
		},
		{
			name: "cooldown over: resize",
			in: func(in Input) Input {
				in.CooldownUntil = t0
				in.Nodes = []NodeState{ready("a", 4)}
				return in
			},
			want: Decision{Resize: 2, Size: 1, Ready: 1, InUse: 4, Wanted: 4},
		},
		{
			name: "template that cannot hold a slot: no growth",
			in: func(in Input) Input {
				in.Template = policy.Resources{"cpu": 500}
				in.Nodes = []NodeState{ready("a", 4)}
				return in
			},
			want: Decision{Size: 1, Ready: 1, InUse: 4, Wanted: 4},
			note: "cannot hold one slot",
		},
		{
			name: "surplus: cordon emptiest first while buffer stays covered",
			in: func(in Input) Input {
				in.Nodes = []NodeState{ready("a", 3), ready("b", 0), ready("c", 1), ready("d", 0), ready("e", 4)}
				return in
			},
			// free 1+4+3+4 = 12, need 4, spare 8: b and d (4 each).
			want: Decision{Cordon: []string{"b", "d"}, Size: 5, Ready: 5, Free: 12, InUse: 8, Wanted: 4},
		},
		{
			name: "surplus kept during the cooldown after a resize",
			in: func(in Input) Input {
				in.CooldownUntil = t0.Add(time.Second)
				in.Nodes = []NodeState{ready("a", 3), ready("b", 0), ready("c", 0)}
				return in
			},
			want: Decision{Size: 3, Ready: 3, Free: 9, InUse: 3, Wanted: 4},
			note: "surplus of 5 slots kept",
		},
		{
			name: "surplus: a node with servers may be cordoned to drain",
			in: func(in Input) Input {
				in.Buffer = policy.Buffer{Absolute: 1}
				in.Nodes = []NodeState{ready("a", 1), ready("b", 2)}
				return in
			},
			// free 3+2 = 5, need 1, spare 4: a (3 free, fewest servers).
			want: Decision{Cordon: []string{"a"}, Size: 2, Ready: 2, Free: 5, InUse: 3, Wanted: 1},
		},
		{
			name: "surplus: full nodes are not cordoned",
			in: func(in Input) Input {
				in.Buffer = policy.Buffer{}
				in.Nodes = []NodeState{ready("a", 4)}
				return in
			},
			want: Decision{Size: 1, Ready: 1, InUse: 4},
		},
		{
			name: "expired empty Swell-cordoned nodes are all deleted in one pass",
			in: func(in Input) Input {
				in.Nodes = []NodeState{ready("a", 0), swellCordoned("old", 0, 3*time.Minute), swellCordoned("older", 0, 5*time.Minute), swellCordoned("young", 0, 30*time.Second)}
				return in
			},
			want: Decision{Delete: []string{"older", "old"}, Size: 4, Ready: 1, Cordoned: 3, Free: 4, Wanted: 4},
		},
		{
			name: "expiry counts from the annotation, exactly",
			in: func(in Input) Input {
				in.Nodes = []NodeState{ready("a", 0), swellCordoned("edge", 0, time.Minute)}
				return in
			},
			want: Decision{Delete: []string{"edge"}, Size: 2, Ready: 1, Cordoned: 1, Free: 4, Wanted: 4},
		},
		{
			name: "a node with a server pod is never deleted",
			in: func(in Input) Input {
				in.Nodes = []NodeState{ready("a", 4), swellCordoned("busy", 1, time.Hour), ready("c", 2), ready("d", 2)}
				return in
			},
			want: Decision{Size: 4, Ready: 3, Cordoned: 1, Free: 4, InUse: 9, Wanted: 4},
		},
		{
			name: "deletion never goes below minimum",
			in: func(in Input) Input {
				in.Min = 2
				in.Nodes = []NodeState{ready("a", 0), swellCordoned("x", 0, 2*time.Hour), swellCordoned("y", 0, time.Hour)}
				return in
			},
			want: Decision{Delete: []string{"x"}, Size: 3, Ready: 1, Cordoned: 2, Free: 4, Wanted: 4},
		},
		{
			name: "nodes being deleted are out of every decision",
			in: func(in Input) Input {
				gone := swellCordoned("gone", 0, time.Hour)
				gone.Deleting = true
				in.Nodes = []NodeState{ready("a", 0), gone}
				return in
			},
			want: Decision{Size: 1, Ready: 1, Free: 4, Wanted: 4},
		},
		{
			name: "no deletion while growing",
			in: func(in Input) Input {
				b := swellCordoned("b", 0, time.Hour)
				b.Ready = false // cannot be reopened
				in.Nodes = []NodeState{ready("a", 4), b}
				return in
			},
			want: Decision{Resize: 3, Size: 2, Ready: 1, Cordoned: 1, InUse: 4, Wanted: 4},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in(clone(base))
			got := Plan(in)
			notes := got.Notes
			got.Notes = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Plan =\n  %+v\nwant\n  %+v", got, tt.want)
			}
			if tt.note != "" && !strings.Contains(strings.Join(notes, "; "), tt.note) {
				t.Fatalf("notes %q do not mention %q", notes, tt.note)
			}
		})
	}
}

// clone copies the maps of base so cases cannot leak into each other.
func clone(in Input) Input {
	in.Slot = copyRes(in.Slot)
	in.Template = copyRes(in.Template)
	return in
}

func copyRes(r policy.Resources) policy.Resources {
	if r == nil {
		return nil
	}
	out := policy.Resources{}
	for k, v := range r {
		out[k] = v
	}
	return out
}

// TestPlanSecondBurstWhileBooting is a migrated kubescaler config (which
// has no resize-cooldown-sec) meeting a second burst while the node
// ordered for the first one still boots. With the default cooldown the
// second burst grows the pool at once, by what the booting node cannot
// cover, and a pass right after either resize orders nothing twice. An
// explicit cooldown still holds the second resize, as documented.
func TestPlanSecondBurstWhileBooting(t *testing.T) {
	cfg, err := FromKeys(map[string]string{
		KeyCloudProvider: ProviderKwok, KeyNodeSelector: "pool=a", KeyPodLabelName: "app",
		KeyServerCPURequest: "1000", KeyBufferSlotSize: "4", KeyMinNodes: "1", KeyMaxNodes: "10",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ResizeCooldown != 0 {
		t.Fatalf("default resize cooldown = %s, want 0 (kubescaler has none)", cfg.ResizeCooldown)
	}
	for _, tc := range []struct {
		name       string
		cooldown   time.Duration
		wantSecond int
	}{
		{"default cooldown", cfg.ResizeCooldown, 4},
		{"explicit resize-cooldown-sec 30", 30 * time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Now: t0, Slot: cfg.Slot, Template: policy.Resources{"cpu": 4000}, Buffer: cfg.Buffer,
				Min: cfg.MinNodes, Max: cfg.MaxNodes, EmptyNodeExpiry: time.Minute}
			// First burst: a full, b holds 2 servers, 2 free < 4 wanted.
			in.Nodes = []NodeState{ready("a", 4), ready("b", 2)}
			first := Plan(in)
			if first.Resize != 3 {
				t.Fatalf("first burst: %+v, want a resize to 3", first)
			}
			cooldownUntil := in.Now.Add(tc.cooldown)

			// The ordered node registers and boots: nothing more to order.
			in.Now, in.CooldownUntil, in.ProviderSize = t0.Add(time.Second), cooldownUntil, 3
			in.Nodes = append(in.Nodes, booting("c"))
			if d := Plan(in); d.Resize != 0 || d.Incoming != 4 {
				t.Fatalf("pass while c boots: %+v, want no resize and 4 incoming", d)
			}

			// Second burst, 4 servers pending, c still booting: 2 free + 4
			// incoming < 4 pending + 4 wanted, so one more node.
			in.Now, in.PendingServerPods = t0.Add(2*time.Second), 4
			second := Plan(in)
			if second.Resize != tc.wantSecond {
				t.Fatalf("second burst: resize %d, want %d (%+v)", second.Resize, tc.wantSecond, second)
			}
			if tc.wantSecond == 0 {
				if !strings.Contains(strings.Join(second.Notes, ";"), "cooldown") {
					t.Fatalf("held resize without a cooldown note: %+v", second)
				}
				return
			}
			// Right after: d registered and boots; nothing is ordered twice.
			in.Now, in.ProviderSize = t0.Add(3*time.Second), 4
			in.Nodes = append(in.Nodes, booting("d"))
			if d := Plan(in); d.Resize != 0 || d.Incoming != 8 {
				t.Fatalf("pass while c and d boot: %+v, want no resize and 8 incoming", d)
			}
		})
	}
}
