package nodepool

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func poolNode(name string, lbls map[string]string, taints ...corev1.Taint) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}, Spec: corev1.NodeSpec{Taints: taints}}
}

func pendingPod(name string, mutate func(*corev1.PodSpec)) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if mutate != nil {
		mutate(&p.Spec)
	}
	return p
}

func requireAffinity(key string, op corev1.NodeSelectorOperator, values ...string) func(*corev1.PodSpec) {
	return func(s *corev1.PodSpec) {
		s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}},
			}}},
		}}
	}
}

// TestPendingDemand: only pending server pods that could land on a pool
// node count as demand; the matching is the scheduler's (node selector,
// required node affinity, NoSchedule/NoExecute taints vs tolerations).
func TestPendingDemand(t *testing.T) {
	gameTaint := corev1.Taint{Key: "dedicated", Value: "game", Effect: corev1.TaintEffectNoSchedule}
	pool := []*corev1.Node{
		poolNode("p1", map[string]string{"role": "scalable", "zone": "a"}, gameTaint),
		poolNode("p2", map[string]string{"role": "scalable", "zone": "b"}, gameTaint,
			corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}),
	}
	tolerateGame := func(s *corev1.PodSpec) {
		s.Tolerations = append(s.Tolerations, corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "game", Effect: corev1.TaintEffectNoSchedule})
	}
	both := func(fs ...func(*corev1.PodSpec)) func(*corev1.PodSpec) {
		return func(s *corev1.PodSpec) {
			for _, f := range fs {
				f(s)
			}
		}
	}
	selector := func(kv ...string) func(*corev1.PodSpec) {
		return func(s *corev1.PodSpec) {
			s.NodeSelector = map[string]string{}
			for i := 0; i+1 < len(kv); i += 2 {
				s.NodeSelector[kv[i]] = kv[i+1]
			}
		}
	}
	tests := []struct {
		name  string
		mut   func(*corev1.PodSpec)
		nodes []*corev1.Node
		want  bool
	}{
		{"tolerates the pool taint, no constraint", tolerateGame, pool, true},
		{"node selector matching the pool", both(tolerateGame, selector("role", "scalable")), pool, true},
		{"node selector for another pool", both(tolerateGame, selector("role", "batch")), pool, false},
		{"node selector matching one pool node", both(tolerateGame, selector("zone", "b")), pool, true},
		{"required affinity In matching", both(tolerateGame, requireAffinity("zone", corev1.NodeSelectorOpIn, "a", "c")), pool, true},
		{"required affinity In ruling the pool out", both(tolerateGame, requireAffinity("zone", corev1.NodeSelectorOpIn, "c")), pool, false},
		{"required affinity NotIn every pool zone", both(tolerateGame, requireAffinity("zone", corev1.NodeSelectorOpNotIn, "a", "b")), pool, false},
		{"required affinity DoesNotExist on a pool label", both(tolerateGame, requireAffinity("role", corev1.NodeSelectorOpDoesNotExist)), pool, false},
		{"no toleration for the pool's taint", nil, pool, false},
		{"toleration for another taint", func(s *corev1.PodSpec) {
			s.Tolerations = []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists}}
		}, pool, false},
		{"tolerate everything", func(s *corev1.PodSpec) { s.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}} }, pool, true},
		{"cordon and not-ready taints do not rule a node out", both(tolerateGame, selector("zone", "b")), []*corev1.Node{
			poolNode("p2", map[string]string{"zone": "b"}, gameTaint,
				corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule},
				corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute}),
		}, true},
		{"PreferNoSchedule taints do not rule a node out", nil, []*corev1.Node{
			poolNode("soft", nil, corev1.Taint{Key: "dedicated", Value: "game", Effect: corev1.TaintEffectPreferNoSchedule}),
		}, true},
		{"empty pool, a selector that fixes no label: every pod counts", selector("role", "batch"), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := 0
			if tt.want {
				want = 1
			}
			if got := PendingDemand([]*corev1.Pod{pendingPod("gs", tt.mut)}, tt.nodes, labels.Everything()); got != want {
				t.Fatalf("PendingDemand = %d, want %d", got, want)
			}
		})
	}
}

// TestPendingDemandIssueScenario is the issue's case: a pool with a buffer
// of 4, one pending server for the pool and three whose node selector is
// another pool's. Only one pod is demand, so the plan wants 4 + 1 slots,
// not the 8 it held before.
func TestPendingDemandIssueScenario(t *testing.T) {
	pool := []*corev1.Node{poolNode("a", map[string]string{"role": "scalable"}), poolNode("b", map[string]string{"role": "scalable"})}
	pods := []*corev1.Pod{pendingPod("ours", nil)}
	for i := range 3 {
		pods = append(pods, pendingPod(fmt.Sprintf("theirs-%d", i), func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{"role": "other"} }))
	}
	demand := PendingDemand(pods, pool, labels.SelectorFromSet(labels.Set{"role": "scalable"}))
	if demand != 1 {
		t.Fatalf("PendingDemand = %d, want 1", demand)
	}
	in := Input{Now: t0, Slot: map[string]int64{"cpu": 1000}, Template: map[string]int64{"cpu": 4000}, Min: 1, Max: 10,
		Nodes: []NodeState{ready("a", 3), ready("b", 0)}, PendingServerPods: demand}
	in.Buffer.Absolute = 4
	d := Plan(in)
	if d.Wanted+int64(in.PendingServerPods) != 5 || d.Resize != 0 || len(d.Cordon) != 0 {
		t.Fatalf("plan with 1 pending for the pool: %+v, want need 5 met by 5 free, no action", d)
	}
	in.PendingServerPods = len(pods) // what was counted before
	if d := Plan(in); d.Resize == 0 {
		t.Fatalf("counting all 4 pending should have grown the pool (the bug): %+v", d)
	}
}

// TestPendingDemandEmptyPool: with no pool node registered, a pending
// server is judged against the labels the pool's nodes will carry (those
// the node selector fixes). A pod asking for another value of such a label
// (or for a label the selector requires absent) is no demand; a constraint
// on any label the selector leaves open might hold on the nodes to come,
// so it still counts.
func TestPendingDemandEmptyPool(t *testing.T) {
	selector := func(kv ...string) func(*corev1.PodSpec) {
		return func(s *corev1.PodSpec) {
			s.NodeSelector = map[string]string{}
			for i := 0; i+1 < len(kv); i += 2 {
				s.NodeSelector[kv[i]] = kv[i+1]
			}
		}
	}
	terms := func(ts ...corev1.NodeSelectorTerm) func(*corev1.PodSpec) {
		return func(s *corev1.PodSpec) {
			s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: ts},
			}}
		}
	}
	expr := func(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
		return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
	}
	term := func(rs ...corev1.NodeSelectorRequirement) corev1.NodeSelectorTerm {
		return corev1.NodeSelectorTerm{MatchExpressions: rs}
	}
	const pool = "role=scalable,tier in (game),!spot"
	tests := []struct {
		name     string
		selector string
		mut      func(*corev1.PodSpec)
		want     bool
	}{
		{"no constraint", pool, nil, true},
		{"node selector on the pool's label", pool, selector("role", "scalable"), true},
		{"node selector for another pool", pool, selector("role", "batch"), false},
		{"node selector on a single-value in label", pool, selector("tier", "game"), true},
		{"node selector for another value of an in label", pool, selector("tier", "web"), false},
		{"node selector on a label the pool requires absent", pool, selector("spot", "true"), false},
		{"node selector on a label the selector leaves open", pool, selector("zone", "a"), true},
		{"node selector with an open label and a conflicting pool label", pool, selector("zone", "a", "role", "batch"), false},
		{"affinity In the pool's value", pool, requireAffinity("role", corev1.NodeSelectorOpIn, "scalable", "batch"), true},
		{"affinity In other values", pool, requireAffinity("role", corev1.NodeSelectorOpIn, "batch"), false},
		{"affinity NotIn the pool's value", pool, requireAffinity("role", corev1.NodeSelectorOpNotIn, "scalable"), false},
		{"affinity DoesNotExist on the pool's label", pool, requireAffinity("role", corev1.NodeSelectorOpDoesNotExist), false},
		{"affinity Exists on a label the pool requires absent", pool, requireAffinity("spot", corev1.NodeSelectorOpExists), false},
		{"affinity DoesNotExist on a label the pool requires absent", pool, requireAffinity("spot", corev1.NodeSelectorOpDoesNotExist), true},
		{"affinity on a label the selector leaves open", pool, requireAffinity("zone", corev1.NodeSelectorOpIn, "a"), true},
		{"one term rules the pool out, another could hold", pool, terms(term(expr("role", corev1.NodeSelectorOpIn, "batch")), term(expr("zone", corev1.NodeSelectorOpIn, "a"))), true},
		{"every term rules the pool out", pool, terms(term(expr("role", corev1.NodeSelectorOpIn, "batch")), term(expr("tier", corev1.NodeSelectorOpIn, "web"), expr("zone", corev1.NodeSelectorOpExists))), false},
		{"a term on metadata.name only could hold", pool, terms(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}}}), true},
		{"taints are unknown before a node exists: no toleration still counts", pool, nil, true},
		{"a set-based selector with several values fixes nothing", "role in (scalable,big)", selector("role", "batch"), true},
		{"a != selector fixes nothing", "role!=batch", selector("role", "other"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := labels.Parse(tt.selector)
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if tt.want {
				want = 1
			}
			if got := PendingDemand([]*corev1.Pod{pendingPod("gs", tt.mut)}, nil, sel); got != want {
				t.Fatalf("PendingDemand = %d, want %d", got, want)
			}
		})
	}
}

// TestPendingDemandEmptyPoolIssueScenario: the issue's three servers for
// another pool, pending while this pool has no node yet, no longer make it
// grow; the one for this pool still does.
func TestPendingDemandEmptyPoolIssueScenario(t *testing.T) {
	sel := labels.SelectorFromSet(labels.Set{"role": "scalable"})
	pods := []*corev1.Pod{pendingPod("ours", func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{"role": "scalable"} })}
	for i := range 3 {
		pods = append(pods, pendingPod(fmt.Sprintf("theirs-%d", i), func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{"role": "other"} }))
	}
	if got := PendingDemand(pods, nil, sel); got != 1 {
		t.Fatalf("PendingDemand in an empty pool = %d, want 1", got)
	}
	in := Input{Now: t0, Slot: map[string]int64{"cpu": 1000}, Template: map[string]int64{"cpu": 4000}, Min: 0, Max: 10,
		PendingServerPods: PendingDemand(pods[1:], nil, sel)}
	if d := Plan(in); d.Resize != 0 {
		t.Fatalf("servers for another pool grew an empty pool with no buffer: %+v", d)
	}
	in.PendingServerPods = PendingDemand(pods, nil, sel)
	if d := Plan(in); d.Resize != 1 {
		t.Fatalf("the server for this pool did not grow the empty pool by one node: %+v", d)
	}
}
