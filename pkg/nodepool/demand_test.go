package nodepool

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
		{"empty pool: shape unknown, every pod counts", selector("role", "batch"), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := 0
			if tt.want {
				want = 1
			}
			if got := PendingDemand([]*corev1.Pod{pendingPod("gs", tt.mut)}, tt.nodes); got != want {
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
	demand := PendingDemand(pods, pool)
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
