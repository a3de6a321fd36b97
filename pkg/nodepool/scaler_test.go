package nodepool

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider"
)

// harness runs a Scaler against a fake clientset with the kwok provider
// and a fake clock; nodes turn Ready only when the test says so.
type harness struct {
	t      *testing.T
	ctx    context.Context
	client *fake.Clientset
	clock  *clocktesting.FakeClock
	s      *Scaler
	events *record.FakeRecorder
	reg    *prometheus.Registry
}

func newHarness(t *testing.T, objs ...any) *harness {
	t.Helper()
	return newHarnessWith(t, nil, nil)
}

// newHarnessWith builds the harness around prov (nil: the kwok provider)
// and state (nil: a fresh one).
func newHarnessWith(t *testing.T, prov provider.Provider, state *State) *harness {
	t.Helper()
	return newHarnessEnv(t, prov, state, nil)
}

// newHarnessEnv is newHarnessWith with some of the harness's environment
// variables overridden (e.g. EMPTY_NODE_EXPIRATION_SEC).
func newHarnessEnv(t *testing.T, prov provider.Provider, state *State, override map[string]string) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	vars := map[string]string{
		"CLOUD_PROVIDER": "kwok", "NODE_SELECTOR": "pool=games", "SERVER_POD_LABEL_NAME": "app", "SERVER_POD_LABEL_VALUE": "game",
		"SERVER_CPU_RESOURCE_REQUEST": "1000", "BUFFER_SLOT_SIZE": "2", "MINIMUM_NODE_POOL_SIZE": "1", "MAXIMUM_NODE_POOL_SIZE": "3",
		"EMPTY_NODE_EXPIRATION_SEC": "60", "RESIZE_COOLDOWN_SEC": "10", "KWOK_NODE_CPU": "4",
	}
	for k, v := range override {
		vars[k] = v
	}
	cfg, err := Load("", env(vars))
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	if prov == nil {
		if prov, err = NewProvider(ctx, cfg, client); err != nil {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, ctx: ctx, client: client, clock: clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		events: record.NewFakeRecorder(100), reg: prometheus.NewRegistry()}
	h.s, err = New(Options{Config: cfg, Client: client, Provider: prov, Clock: h.clock, Recorder: h.events, Registerer: h.reg, State: state})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return h
}

// passUntil runs passes until ok holds for the decision (the informer
// cache catches up asynchronously).
func (h *harness) passUntil(what string, ok func(Decision) bool) Decision {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, err := h.s.Pass(h.ctx)
		if err != nil {
			h.t.Fatalf("pass: %v", err)
		}
		if ok(d) {
			return d
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: last decision %+v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pass runs one pass and fails the test on an error.
func (h *harness) pass() Decision {
	h.t.Helper()
	d, err := h.s.Pass(h.ctx)
	if err != nil {
		h.t.Fatalf("pass: %v", err)
	}
	return d
}

func (h *harness) node(name string) *corev1.Node {
	h.t.Helper()
	n, err := h.client.CoreV1().Nodes().Get(h.ctx, name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func (h *harness) nodes() []corev1.Node {
	list, err := h.client.CoreV1().Nodes().List(h.ctx, metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return list.Items
}

func (h *harness) markReady() {
	for _, n := range h.nodes() {
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		if _, err := h.client.CoreV1().Nodes().UpdateStatus(h.ctx, &n, metav1.UpdateOptions{}); err != nil {
			h.t.Fatal(err)
		}
	}
}

func (h *harness) addServer(name, node string) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "game"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "gs", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if _, err := h.client.CoreV1().Pods("default").Create(h.ctx, pod, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func TestScalerLifecycle(t *testing.T) {
	h := newHarness(t)

	// Empty pool: grow to hold the buffer (1 node of 4 slots).
	d := h.passUntil("first resize", func(d Decision) bool { return d.Resize == 1 })
	if len(h.nodes()) != 1 {
		t.Fatalf("nodes after resize = %d", len(h.nodes()))
	}
	// The node is booting: counted as incoming, no second resize even
	// after the cooldown.
	h.clock.Step(time.Minute)
	h.passUntil("booting node counted", func(d Decision) bool { return d.Booting == 1 && d.Resize == 0 && d.Incoming == 4 })

	// Ready, then three servers arrive: 1 free < 2 wanted → grow to 2.
	h.markReady()
	node0 := h.nodes()[0].Name
	for _, p := range []string{"a", "b", "c"} {
		h.addServer(p, node0)
	}
	h.passUntil("growth for the burst", func(d Decision) bool { return d.Resize == 2 })
	// Another server right after: the node being created covers it, so
	// nothing is ordered twice.
	h.addServer("d", node0)
	d = h.passUntil("fourth server seen", func(d Decision) bool { return d.InUse == 4 })
	if d.Resize != 0 || d.Incoming != 4 {
		t.Fatalf("second resize while a node boots: %+v", d)
	}

	// Servers leave: the empty node is surplus (8 free > 2 wanted).
	h.markReady()
	for _, p := range []string{"a", "b", "c", "d"} {
		if err := h.client.CoreV1().Pods("default").Delete(h.ctx, p, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	h.clock.Step(time.Minute) // past the resize cooldown
	cordonedAt := h.clock.Now()
	h.passUntil("cordon surplus", func(d Decision) bool { return len(d.Cordon) == 1 })
	var cordoned string
	for _, n := range h.nodes() {
		if n.Spec.Unschedulable {
			cordoned = n.Name
			if got := n.Annotations[CordonedAtAnnotation]; got != cordonedAt.UTC().Format(time.RFC3339Nano) {
				t.Fatalf("annotation = %q", got)
			}
		}
	}
	// The first pass that sees the cordon starts the expiry clock on the
	// node (empty of server pods since then), not at the cordon.
	h.clock.Step(30 * time.Second)
	emptyAt := h.clock.Now()
	h.passUntil("cordoned counted", func(d Decision) bool { return d.Cordoned == 1 && len(d.Delete) == 0 })
	h.passUntil("empty-since recorded", func(Decision) bool {
		n := h.node(cordoned)
		return n.Annotations[EmptySinceAnnotation] == emptyAt.UTC().Format(time.RFC3339Nano)
	})
	// Cordoned 60 s ago but empty for 30 s: kept, and later passes do not
	// move the clock.
	h.clock.Step(30 * time.Second)
	for range 5 {
		if d := h.pass(); len(d.Delete) != 0 {
			t.Fatalf("deleted a node empty for 30s with a 60s expiry: %+v", d)
		}
	}
	if got := h.node(cordoned).Annotations[EmptySinceAnnotation]; got != emptyAt.UTC().Format(time.RFC3339Nano) {
		t.Fatalf("empty-since moved to %q", got)
	}
	// Expired: the first live look starts the validation delay; nothing
	// is deleted before it has passed.
	h.clock.Step(30 * time.Second)
	h.passUntil("expired node drained", func(d Decision) bool { return strings.Contains(strings.Join(d.Notes, "\n"), "node "+cordoned) })
	for range 3 {
		if d := h.pass(); len(d.Delete) != 0 {
			t.Fatalf("deleted before the validation delay: %+v", d)
		}
	}
	if len(h.nodes()) != 2 {
		t.Fatalf("node deleted before the validation delay: %d nodes", len(h.nodes()))
	}
	h.clock.Step(DefaultDrainValidationDelay)
	h.passUntil("expired node deleted", func(d Decision) bool { return len(d.Delete) == 1 && d.Delete[0] == cordoned })
	if len(h.nodes()) != 1 {
		t.Fatalf("nodes after delete = %d, want 1 (minimum)", len(h.nodes()))
	}
	m := &dto.Metric{}
	if err := h.s.metrics.actions.WithLabelValues(h.s.pool, "delete").Write(m); err != nil || m.GetCounter().GetValue() != 1 {
		got := m.GetCounter().GetValue()
		t.Fatalf("delete actions metric = %v", got)
	}
	assertEvent(t, h.events, ReasonCordoned, ReasonDeleting, ReasonResized)
}

func TestScalerLeavesOthersCordonsAlone(t *testing.T) {
	h := newHarness(t)
	h.passUntil("first resize", func(d Decision) bool { return d.Resize == 1 })
	h.markReady()
	n := h.nodes()[0]
	n.Spec.Unschedulable = true // an operator's cordon, no annotation
	if _, err := h.client.CoreV1().Nodes().Update(h.ctx, &n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.clock.Step(time.Hour)
	d := h.passUntil("operator cordon seen", func(d Decision) bool { return d.Cordoned == 1 })
	if len(d.Uncordon) != 0 || len(d.Delete) != 0 || d.Resize != 2 {
		t.Fatalf("decision touched another's cordon or did not grow around it: %+v", d)
	}
	got, _ := h.client.CoreV1().Nodes().Get(h.ctx, n.Name, metav1.GetOptions{})
	if !got.Spec.Unschedulable {
		t.Fatal("operator's cordon was lifted")
	}
}

func TestDeleteRechecksServerPodsLive(t *testing.T) {
	h := newHarness(t)
	h.passUntil("first resize", func(d Decision) bool { return d.Resize == 1 })
	name := h.nodes()[0].Name
	n := h.nodes()[0]
	n.Spec.Unschedulable = true
	n.Annotations[CordonedAtAnnotation] = h.clock.Now().Add(-time.Hour).Format(time.RFC3339Nano)
	if _, err := h.client.CoreV1().Nodes().Update(h.ctx, &n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The cache says empty; the API server knows a server pod is bound.
	cached := map[string]*corev1.Node{name: &n}
	h.addServer("late", name)
	if got, _, err := h.s.deleteNodes(h.ctx, []string{name}, cached); err != nil || len(got) != 0 {
		t.Fatalf("deleteNodes = %v, %v; want none deleted", got, err)
	}
	if len(h.nodes()) != 1 {
		t.Fatal("node with a server pod was deleted")
	}
}

func assertEvent(t *testing.T, rec *record.FakeRecorder, reasons ...string) {
	t.Helper()
	var all []string
	for {
		select {
		case e := <-rec.Events:
			all = append(all, e)
			continue
		default:
		}
		break
	}
	joined := strings.Join(all, "\n")
	for _, r := range reasons {
		if !strings.Contains(joined, r) {
			t.Errorf("no %s event in:\n%s", r, joined)
		}
	}
}
