package nodepool

import (
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

func TestAssessDrain(t *testing.T) {
	servers := labels.SelectorFromSet(labels.Set{"app": "game"})
	pod := func(name string, mutate ...func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
		for _, m := range mutate {
			m(p)
		}
		return p
	}
	server := func(p *corev1.Pod) { p.Labels = map[string]string{"app": "game"} }
	owned := func(kind string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: kind, Name: "x", Controller: ptr.To(true)}}
		}
	}
	annotated := func(k, v string) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Annotations = map[string]string{k: v} }
	}
	phase := func(ph corev1.PodPhase) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Status.Phase = ph } }
	terminating := func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{} }

	type want struct {
		blockers    []string
		evict       []string
		terminating []string
		clean       bool
	}
	tests := []struct {
		name string
		pods []*corev1.Pod
		want want
	}{
		{"no pods", nil, want{clean: true}},
		{"daemonset pod goes with the node", []*corev1.Pod{pod("ds", owned("DaemonSet"))}, want{clean: true}},
		{"mirror pod goes with the node", []*corev1.Pod{pod("static", annotated(corev1.MirrorPodAnnotationKey, "abc"))}, want{clean: true}},
		{"succeeded and failed pods hold nothing", []*corev1.Pod{pod("done", phase(corev1.PodSucceeded)), pod("crashed", phase(corev1.PodFailed))}, want{clean: true}},
		{"a finished server pod holds nothing", []*corev1.Pod{pod("gs", server, phase(corev1.PodSucceeded))}, want{clean: true}},
		{"replicaset pod is evicted", []*corev1.Pod{pod("web", owned("ReplicaSet"))}, want{evict: []string{"web"}}},
		{"bare pod is evicted", []*corev1.Pod{pod("bare")}, want{evict: []string{"bare"}}},
		{"pending pod bound to the node is evicted", []*corev1.Pod{pod("p", phase(corev1.PodPending))}, want{evict: []string{"p"}}},
		{"a daemonset owner that is not the controller does not count", []*corev1.Pod{pod("x", func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: "DaemonSet", Name: "x"}}
		})}, want{evict: []string{"x"}}},
		{"server pod blocks and is never evicted", []*corev1.Pod{pod("gs", server)}, want{blockers: []string{"ns/gs"}}},
		{"terminating server pod still blocks", []*corev1.Pod{pod("gs", server, terminating)}, want{blockers: []string{"ns/gs"}}},
		{"cluster-autoscaler safe-to-evict false blocks", []*corev1.Pod{pod("db", annotated(SafeToEvictAnnotation, "false"))}, want{blockers: []string{"ns/db"}}},
		{"cluster-autoscaler safe-to-evict true is evicted", []*corev1.Pod{pod("db", annotated(SafeToEvictAnnotation, "true"))}, want{evict: []string{"db"}}},
		{"karpenter do-not-disrupt true blocks", []*corev1.Pod{pod("job", annotated(DoNotDisruptAnnotation, "true"))}, want{blockers: []string{"ns/job"}}},
		{"karpenter do-not-disrupt false is evicted", []*corev1.Pod{pod("job", annotated(DoNotDisruptAnnotation, "false"))}, want{evict: []string{"job"}}},
		{"karpenter legacy do-not-evict true blocks", []*corev1.Pod{pod("job", annotated(DoNotEvictAnnotation, "true"))}, want{blockers: []string{"ns/job"}}},
		{"karpenter legacy do-not-evict false is evicted", []*corev1.Pod{pod("job", annotated(DoNotEvictAnnotation, "false"))}, want{evict: []string{"job"}}},
		{"karpenter legacy do-not-evict on a terminating pod still blocks", []*corev1.Pod{pod("job", annotated(DoNotEvictAnnotation, "true"), terminating)}, want{blockers: []string{"ns/job"}}},
		{"daemonset pod annotated do-not-evict still goes with the node", []*corev1.Pod{pod("ds", owned("DaemonSet"), annotated(DoNotEvictAnnotation, "true"))}, want{clean: true}},
		{"daemonset pod annotated safe-to-evict false still goes with the node", []*corev1.Pod{pod("ds", owned("DaemonSet"), annotated(SafeToEvictAnnotation, "false"))}, want{clean: true}},
		{"terminating pod is waited for, not evicted again", []*corev1.Pod{pod("web", owned("ReplicaSet"), terminating)}, want{terminating: []string{"ns/web"}}},
		{"mixed node: one blocker is enough, the rest still listed", []*corev1.Pod{
			pod("ds", owned("DaemonSet")), pod("web-b", owned("ReplicaSet")), pod("web-a", owned("ReplicaSet")),
			pod("db", annotated(SafeToEvictAnnotation, "false")), pod("old", owned("ReplicaSet"), terminating),
		}, want{blockers: []string{"ns/db"}, evict: []string{"web-a", "web-b"}, terminating: []string{"ns/old"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := AssessDrain(tc.pods, servers)
			got := want{clean: v.Clean(), terminating: v.Terminating}
			for _, b := range v.Blockers {
				got.blockers = append(got.blockers, b.Pod)
				if b.Reason == "" {
					t.Errorf("blocker %s has no reason", b.Pod)
				}
			}
			for _, p := range v.Evict {
				got.evict = append(got.evict, p.Name)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("AssessDrain = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestBlockerReasonsNameTheAnnotation(t *testing.T) {
	servers := labels.SelectorFromSet(labels.Set{"app": "game"})
	for ann, val := range map[string]string{SafeToEvictAnnotation: "false", DoNotDisruptAnnotation: "true", DoNotEvictAnnotation: "true"} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Annotations: map[string]string{ann: val}}}
		v := AssessDrain([]*corev1.Pod{p}, servers)
		if len(v.Blockers) != 1 || v.Blockers[0].Reason != "annotated "+ann+"="+val {
			t.Errorf("%s: blockers %+v", ann, v.Blockers)
		}
	}
}

func TestEmptySinceFor(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	earlier := now.Add(-time.Minute)
	node := func(ann string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: map[string]string{}}}
		if ann != "" {
			n.Annotations[EmptySinceAnnotation] = ann
		}
		return n
	}
	empty := NodeState{SwellCordoned: true, Cordoned: true}
	for _, tc := range []struct {
		name string
		ann  string
		st   func(NodeState) NodeState
		want EmptySinceChange
	}{
		{"just became empty: the clock starts now", "", func(s NodeState) NodeState { return s }, EmptySinceChange{Set: true, Since: now}},
		{"empty before (a restart): the recorded time stays", earlier.Format(time.RFC3339Nano), func(s NodeState) NodeState { return s }, EmptySinceChange{Since: earlier}},
		{"unreadable value: the clock restarts, never expires early", "yesterday", func(s NodeState) NodeState { return s }, EmptySinceChange{Set: true, Since: now}},
		{"a server pod landed: the clock stops", earlier.Format(time.RFC3339Nano), func(s NodeState) NodeState { s.ServerPods = 1; return s }, EmptySinceChange{Clear: true}},
		{"uncordoned by someone else: the clock stops", earlier.Format(time.RFC3339Nano), func(s NodeState) NodeState { s.Cordoned = false; return s }, EmptySinceChange{Clear: true}},
		{"not Swell's cordon: no clock", "", func(s NodeState) NodeState { s.SwellCordoned = false; return s }, EmptySinceChange{}},
		{"being deleted: no write", earlier.Format(time.RFC3339Nano), func(s NodeState) NodeState { s.Deleting = true; return s }, EmptySinceChange{}},
		{"busy and no annotation: nothing", "", func(s NodeState) NodeState { s.ServerPods = 2; return s }, EmptySinceChange{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := EmptySinceFor(node(tc.ann), tc.st(empty), now); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("EmptySinceFor = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestPlanExpiryCountsFromEmptySince: the plan deletes by how long a node
// has been empty, not by its cordon's age.
func TestPlanExpiryCountsFromEmptySince(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	node := func(name string, cordoned, empty time.Duration) NodeState {
		n := NodeState{Name: name, Ready: true, Cordoned: true, SwellCordoned: true, CordonedAt: now.Add(-cordoned),
			Allocatable: policy.Resources{"cpu": 4000}, Requested: policy.Resources{}}
		if empty > 0 {
			n.EmptySince = now.Add(-empty)
		}
		return n
	}
	in := Input{Now: now, Slot: policy.Resources{"cpu": 1000}, Template: policy.Resources{"cpu": 4000}, Min: 0, Max: 5, EmptyNodeExpiry: 10 * time.Minute}
	for _, tc := range []struct {
		name  string
		nodes []NodeState
		want  []string
	}{
		{"cordoned an hour ago, empty for a minute: kept", []NodeState{node("a", time.Hour, time.Minute)}, nil},
		{"cordoned an hour ago, empty clock not started: kept", []NodeState{node("a", time.Hour, 0)}, nil},
		{"empty for eleven minutes: deleted", []NodeState{node("a", time.Hour, 11*time.Minute)}, []string{"a"}},
		{"empty longest first, whatever the cordon age", []NodeState{node("young-cordon", time.Minute*20, 15*time.Minute), node("old-cordon", time.Hour, 12*time.Minute)}, []string{"young-cordon", "old-cordon"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := in
			in.Nodes = tc.nodes
			if got := Plan(in).Delete; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Delete = %v, want %v", got, tc.want)
			}
		})
	}
}
