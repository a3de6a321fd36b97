package nodepool

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// docs/nodepool.md §Safety: "An expiry of 0 is accepted and means 'as soon
// as it is empty': the node is drained and deleted after the validation
// delay, never in the pass that first sees it empty." These tests pin that
// sentence: the config accepts 0, the plan chooses a node only once its
// empty clock has started, and the scaler deletes it only after the drain
// validation delay.

func TestLoadAcceptsExpiryZero(t *testing.T) {
	cfg, err := Load("", env(map[string]string{
		"CLOUD_PROVIDER": "kwok", "NODE_SELECTOR": "pool=games", "SERVER_POD_LABEL_NAME": "app",
		"SERVER_CPU_RESOURCE_REQUEST": "1000", "EMPTY_NODE_EXPIRATION_SEC": "0",
	}))
	if err != nil {
		t.Fatalf("expiry 0 rejected: %v", err)
	}
	if cfg.EmptyNodeExpiration != 0 {
		t.Fatalf("EmptyNodeExpiration = %s, want 0", cfg.EmptyNodeExpiration)
	}
}

// TestPlanExpiryZero: with expiry 0 the plan chooses a Swell-cordoned node
// as soon as its empty clock has started, and never one whose clock has
// not (the pass that first sees it empty starts the clock; see
// EmptySinceFor), one with a server pod, or one it cordons in this pass.
func TestPlanExpiryZero(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	node := func(name string, mutate func(*NodeState)) NodeState {
		n := NodeState{Name: name, Ready: true, Allocatable: policy.Resources{"cpu": 4000}, Requested: policy.Resources{}}
		mutate(&n)
		return n
	}
	cordoned := func(emptySince time.Time, servers int) func(*NodeState) {
		return func(n *NodeState) {
			n.Cordoned, n.SwellCordoned, n.CordonedAt, n.EmptySince, n.ServerPods = true, true, now.Add(-time.Hour), emptySince, servers
			n.Requested = policy.Resources{"cpu": int64(servers) * 1000}
		}
	}
	open := func(servers int) func(*NodeState) {
		return func(n *NodeState) {
			n.ServerPods = servers
			n.Requested = policy.Resources{"cpu": int64(servers) * 1000}
		}
	}
	in := Input{Now: now, Slot: policy.Resources{"cpu": 1000}, Template: policy.Resources{"cpu": 4000},
		Buffer: policy.Buffer{Absolute: 2}, Min: 1, Max: 5, EmptyNodeExpiry: 0}
	for _, tc := range []struct {
		name       string
		nodes      []NodeState
		wantDelete []string
		wantCordon []string
	}{
		{"empty clock not started: not chosen", []NodeState{node("keep", open(1)), node("a", cordoned(time.Time{}, 0))}, nil, nil},
		{"empty clock started this instant: chosen at once", []NodeState{node("keep", open(1)), node("a", cordoned(now, 0))}, []string{"a"}, nil},
		{"empty clock started earlier: chosen", []NodeState{node("keep", open(1)), node("a", cordoned(now.Add(-time.Second), 0))}, []string{"a"}, nil},
		{"a server pod on it: never chosen", []NodeState{node("keep", open(1)), node("a", cordoned(time.Time{}, 1))}, nil, nil},
		{"an open empty surplus node is cordoned, not deleted, in the same pass", []NodeState{node("keep", open(1)), node("a", open(0))}, nil, []string{"a"}},
		{"never below the minimum", []NodeState{node("a", cordoned(now, 0))}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := in
			in.Nodes = tc.nodes
			d := Plan(in)
			if !reflect.DeepEqual(d.Delete, tc.wantDelete) || !reflect.DeepEqual(d.Cordon, tc.wantCordon) {
				t.Errorf("Delete = %v, Cordon = %v; want %v, %v", d.Delete, d.Cordon, tc.wantDelete, tc.wantCordon)
			}
		})
	}
}

// TestExpiryZeroDeletesAfterTheValidationDelay: the scaler with expiry 0
// starts the empty clock on the first pass that sees a Swell-cordoned node
// empty, drains it, and deletes it only after the drain validation delay,
// however many passes run before that; a non-server pod on it is evicted
// first and restarts the delay.
func TestExpiryZeroDeletesAfterTheValidationDelay(t *testing.T) {
	for _, tc := range []struct {
		name     string
		otherPod bool
	}{
		{"empty node", false},
		{"node with a pod to evict", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarnessEnv(t, nil, nil, map[string]string{"EMPTY_NODE_EXPIRATION_SEC": "0"})
			ev := &evictions{}
			ev.install(h)
			h.addPoolNode("keep", 0, 0)
			h.addPoolNode("old", time.Hour, 0) // cordoned by Swell an hour ago, empty clock not started
			pods := 0
			if tc.otherPod {
				h.addPod("web", "old", nil)
				pods = 1
			}
			h.settle("old", pods)

			first := h.clock.Now().UTC().Format(time.RFC3339Nano)
			if d := h.pass(); len(d.Delete) != 0 || !h.nodeExists("old") {
				t.Fatalf("deleted in the pass that first saw the node empty: %+v", d)
			}
			if got := h.node("old").Annotations[EmptySinceAnnotation]; got != first {
				t.Fatalf("empty-since = %q, want %q (the first pass)", got, first)
			}
			if tc.otherPod {
				if ev.count() != 1 {
					t.Fatalf("evictions %v, want web once", ev.asked)
				}
				h.settle("old", 0)
			}
			// No time passes: however many passes run, the node stays.
			for i := range 5 {
				d := h.pass()
				if len(d.Delete) != 0 || !h.nodeExists("old") {
					t.Fatalf("pass %d deleted the node before the validation delay: %+v", i, d)
				}
				if note := strings.Join(d.Notes, "\n"); !strings.Contains(note, "node old: drained") {
					t.Fatalf("pass %d: notes do not say the node waits for its re-check: %q", i, note)
				}
			}
			h.clock.Step(DefaultDrainValidationDelay - time.Millisecond)
			if d := h.pass(); len(d.Delete) != 0 {
				t.Fatalf("deleted a millisecond before the validation delay: %+v", d)
			}
			h.clock.Step(time.Millisecond)
			if d := h.pass(); !reflect.DeepEqual(d.Delete, []string{"old"}) || h.nodeExists("old") {
				t.Fatalf("not deleted once the validation delay passed: %+v", d)
			}
			if !h.nodeExists("keep") {
				t.Fatal("the open node was deleted")
			}
		})
	}
}
