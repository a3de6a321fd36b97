package nodepool

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider"
	"github.com/swell-autoscaler/swell/pkg/policy"
)

// addPoolNode creates a Ready pool node; cordonedFor and emptyFor set
// Swell's annotations that long before the fake clock's now (0: absent).
func (h *harness) addPoolNode(name string, cordonedFor, emptyFor time.Duration) {
	h.t.Helper()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": "games"}, Annotations: map[string]string{}},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")},
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	if cordonedFor > 0 {
		n.Spec.Unschedulable = true
		n.Annotations[CordonedAtAnnotation] = h.clock.Now().Add(-cordonedFor).UTC().Format(time.RFC3339Nano)
	}
	if emptyFor > 0 {
		n.Annotations[EmptySinceAnnotation] = h.clock.Now().Add(-emptyFor).UTC().Format(time.RFC3339Nano)
	}
	if _, err := h.client.CoreV1().Nodes().Create(h.ctx, n, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// addPod binds a running non-server pod to node.
func (h *harness) addPod(name, node string, annotations map[string]string) {
	h.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: annotations},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if _, err := h.client.CoreV1().Pods("default").Create(h.ctx, p, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// evictions answers the Eviction API on the fake clientset as the API
// server does: refuse (429 with the budget's cause) while refuse is set,
// else delete the pod. It records every eviction asked for.
type evictions struct {
	mu     sync.Mutex
	asked  []string
	refuse string
}

func (e *evictions) install(h *harness) {
	h.client.PrependReactor("create", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		ev := a.(clienttesting.CreateAction).GetObject().(*policyv1.Eviction)
		e.mu.Lock()
		e.asked = append(e.asked, ev.Name)
		refuse := e.refuse
		e.mu.Unlock()
		if refuse != "" {
			err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
			err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
				Type: policyv1.DisruptionBudgetCause, Message: "The disruption budget " + refuse + " needs 1 healthy pods and has 1 currently",
			})
			return true, nil, err
		}
		return true, nil, h.client.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), ev.Namespace, ev.Name)
	})
}

func (e *evictions) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.asked)
}

func (h *harness) nodeExists(name string) bool {
	_, err := h.client.CoreV1().Nodes().Get(h.ctx, name, metav1.GetOptions{})
	return err == nil
}

// settle runs passes until the cache shows the node with the pods the
// test made (the informers catch up asynchronously).
func (h *harness) settle(node string, pods int) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(h.s.cache.podsOn(node)) != pods {
		if time.Now().After(deadline) {
			h.t.Fatalf("cache never showed %d pods on %s", pods, node)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		if _, err := h.s.cache.nodes.Get(node); err == nil {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("cache never showed node %s", node)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDrainEvictsThroughTheEvictionAPIThenDeletes(t *testing.T) {
	h := newHarness(t)
	ev := &evictions{}
	ev.install(h)
	h.addPoolNode("keep", 0, 0)
	h.addPoolNode("old", time.Hour, 2*time.Minute)
	h.addPod("web", "old", nil)
	h.settle("old", 1)

	d := h.pass()
	if len(d.Delete) != 0 || ev.count() != 1 || !h.nodeExists("old") {
		t.Fatalf("first pass must evict and keep the node: decision %+v, evictions %v", d, ev.asked)
	}
	h.settle("old", 0)
	// Clean now, but the validation delay since the eviction has not
	// passed: passes keep the node.
	for range 5 {
		if d := h.pass(); len(d.Delete) != 0 {
			t.Fatalf("deleted before the validation delay: %+v", d)
		}
	}
	h.clock.Step(DefaultDrainValidationDelay)
	d = h.pass()
	if len(d.Delete) != 1 || h.nodeExists("old") {
		t.Fatalf("drained node not deleted after the validation delay: %+v", d)
	}
	if ev.count() != 1 {
		t.Fatalf("evictions %v, want exactly web once", ev.asked)
	}
	assertEvent(t, h.events, ReasonDraining, ReasonDeleting)
}

func TestDrainRefusedByABudgetKeepsTheNode(t *testing.T) {
	h := newHarness(t)
	ev := &evictions{refuse: "web-pdb"}
	ev.install(h)
	h.addPoolNode("keep", 0, 0)
	h.addPoolNode("old", time.Hour, 2*time.Minute)
	h.addPod("web", "old", nil)
	h.settle("old", 1)

	passes := 0
	for range 6 {
		d := h.pass()
		passes++
		if len(d.Delete) != 0 || !h.nodeExists("old") {
			t.Fatalf("pass %d deleted a node whose eviction was refused: %+v", passes, d)
		}
		if note := strings.Join(d.Notes, "\n"); !strings.Contains(note, "default/web") || !strings.Contains(note, "web-pdb") {
			t.Fatalf("pass %d: notes do not name the pod and the budget: %q", passes, note)
		}
		h.clock.Step(DefaultDrainValidationDelay)
	}
	events := drainEvents(h.events)
	blocked := 0
	for _, e := range events {
		if strings.Contains(e, ReasonDeletionBlocked) {
			blocked++
			if !strings.Contains(e, "default/web") || !strings.Contains(e, "web-pdb") {
				t.Errorf("event does not name pod and budget: %s", e)
			}
		}
	}
	if blocked != 1 {
		t.Errorf("%d %s events over %d passes, want 1: %v", blocked, ReasonDeletionBlocked, passes, events)
	}
	// The budget allows it now: drained and deleted.
	ev.mu.Lock()
	ev.refuse = ""
	ev.mu.Unlock()
	h.pass()
	h.settle("old", 0)
	h.clock.Step(DefaultDrainValidationDelay)
	if d := h.pass(); len(d.Delete) != 1 {
		t.Fatalf("not deleted once the budget allowed the eviction: %+v", d)
	}
}

func TestDoNotDisruptPodsBlockDeletion(t *testing.T) {
	for _, ann := range []map[string]string{
		{SafeToEvictAnnotation: "false"},
		{DoNotDisruptAnnotation: "true"},
	} {
		t.Run(strings.Join(keys(ann), ""), func(t *testing.T) {
			h := newHarness(t)
			ev := &evictions{}
			ev.install(h)
			h.addPoolNode("keep", 0, 0)
			h.addPoolNode("old", time.Hour, time.Hour)
			h.addPod("db", "old", ann)
			h.settle("old", 1)
			for i := range 5 {
				if d := h.pass(); len(d.Delete) != 0 || !h.nodeExists("old") {
					t.Fatalf("pass %d deleted a node holding a do-not-disrupt pod: %+v", i, d)
				}
				h.clock.Step(DefaultDrainValidationDelay)
			}
			if ev.count() != 0 {
				t.Fatalf("evicted a do-not-disrupt pod: %v", ev.asked)
			}
			assertEvent(t, h.events, ReasonDeletionBlocked, keys(ann)[0])
		})
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestExpiryCountsFromEmptyNotFromCordon(t *testing.T) {
	h := newHarness(t) // expiry 60 s
	h.addPoolNode("keep", 0, 0)
	h.addPoolNode("old", time.Hour, 30*time.Second)
	h.settle("old", 0)
	for range 5 {
		if d := h.pass(); len(d.Delete) != 0 || strings.Contains(strings.Join(d.Notes, " "), "node old") {
			t.Fatalf("a node empty for 30 s was chosen with a 60 s expiry (cordoned an hour ago): %+v", d)
		}
	}
	h.clock.Step(30 * time.Second)
	h.pass() // expired: the drain begins
	h.clock.Step(DefaultDrainValidationDelay)
	if d := h.pass(); len(d.Delete) != 1 {
		t.Fatalf("not deleted once empty for the expiry: %+v", d)
	}
}

func TestEmptySinceStartsWhenEmptyAndStopsWhenAServerLands(t *testing.T) {
	h := newHarness(t)
	h.addPoolNode("keep", 0, 0)
	h.addPoolNode("old", time.Hour, 0)
	// keep is the fuller node, so the plan keeps old cordoned throughout.
	h.addServer("k1", "keep")
	h.addServer("k2", "keep")
	h.addServer("gs", "old")
	h.settle("keep", 2)
	h.settle("old", 1)
	h.pass()
	if _, ok := h.node("old").Annotations[EmptySinceAnnotation]; ok {
		t.Fatal("empty-since set on a node with a server pod")
	}
	if err := h.client.CoreV1().Pods("default").Delete(h.ctx, "gs", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.settle("old", 0)
	h.clock.Step(time.Second)
	want := h.clock.Now().UTC().Format(time.RFC3339Nano)
	h.pass()
	if got := h.node("old").Annotations[EmptySinceAnnotation]; got != want {
		t.Fatalf("empty-since = %q, want %q (the pass that first saw it empty)", got, want)
	}
	h.addServer("gs2", "old")
	h.settle("old", 1)
	h.passUntil("empty-since cleared", func(Decision) bool {
		_, ok := h.node("old").Annotations[EmptySinceAnnotation]
		return !ok
	})
}

// lingering is a provider whose deleted nodes stay registered for a
// while, as a cloud's do while their machine shuts down: the Node object
// is still there, without a deletionTimestamp, on later passes.
type lingering struct {
	mu      sync.Mutex
	deletes map[string]int
}

func (l *lingering) Size(context.Context) (int, error) { return 0, nil }
func (l *lingering) Resize(context.Context, int) error { return nil }
func (l *lingering) Delete(_ context.Context, nodes []*corev1.Node) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range nodes {
		l.deletes[n.Name]++
	}
	return nil
}
func (l *lingering) Template() policy.Resources { return policy.Resources{"cpu": 4000} }

func (l *lingering) count(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deletes[name]
}

// TestStateCarriesDeletionsToTheNextScaler is the spec-edit case: a new
// Scaler for the same pool, given the old one's State, does not delete a
// node again that the provider is still removing. A fresh State (the old
// behaviour, a rebuilt runner) asks the provider twice.
func TestStateCarriesDeletionsToTheNextScaler(t *testing.T) {
	for _, tc := range []struct {
		name  string
		share bool
		want  int
	}{{"shared state", true, 1}, {"fresh state", false, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			prov := &lingering{deletes: map[string]int{}}
			state := NewState()
			h := newHarnessWith(t, prov, state)
			h.addPoolNode("keep", 0, 0)
			h.addPoolNode("old", time.Hour, time.Hour)
			h.settle("old", 0)
			h.pass()
			h.clock.Step(DefaultDrainValidationDelay)
			if d := h.pass(); len(d.Delete) != 1 || prov.count("old") != 1 {
				t.Fatalf("first scaler did not delete: %+v", d)
			}
			next := state
			if !tc.share {
				next = nil
			}
			h.rebuild(prov, next)
			h.settle("old", 0)
			for range 4 {
				h.pass()
				h.clock.Step(DefaultDrainValidationDelay)
			}
			if got := prov.count("old"); got != tc.want {
				t.Fatalf("provider asked to delete old %d times, want %d", got, tc.want)
			}
		})
	}
}

// rebuild replaces the harness's Scaler with a new one on the same client
// and clock, as the controller does on a spec edit.
func (h *harness) rebuild(prov provider.Provider, state *State) {
	h.t.Helper()
	s, err := New(Options{Config: h.s.cfg, Client: h.client, Provider: prov, Clock: h.clock, Recorder: h.events, State: state})
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := s.Start(h.ctx); err != nil {
		h.t.Fatal(err)
	}
	h.s = s
}

// drainEvents empties the fake recorder.
func drainEvents(rec *record.FakeRecorder) []string {
	var all []string
	for {
		select {
		case e := <-rec.Events:
			all = append(all, e)
		default:
			return all
		}
	}
}
