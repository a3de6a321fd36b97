package nodepool

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/swell-autoscaler/swell/pkg/nodepool/agones"
	"github.com/swell-autoscaler/swell/pkg/policy"
)

func gsPod(name, node string, cpu string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "games", Name: name, Labels: map[string]string{"app": "game"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "s", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}}}},
	}
}

func agonesNode(name string, annotations map[string]string, cordoned bool) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec:       corev1.NodeSpec{Unschedulable: cordoned},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")},
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
}

func TestAgonesNodeState(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	swell := map[string]string{CordonedAtAnnotation: at.Format(time.RFC3339Nano), EmptySinceAnnotation: at.Format(time.RFC3339Nano)}
	slot := policy.Resources{"cpu": 1000}
	cases := []struct {
		name      string
		node      *corev1.Node
		pods      []*corev1.Pod
		servers   []agones.GameServer
		occupied  int
		free      int64
		emptySinc bool
	}{
		{
			name: "an Allocated server is in use and holds its slot; a Ready one is a free slot",
			node: agonesNode("n1", nil, false),
			pods: []*corev1.Pod{gsPod("a", "n1", "1"), gsPod("r", "n1", "1")},
			servers: []agones.GameServer{
				{Namespace: "games", Name: "a", Node: "n1", State: agones.StateAllocated},
				{Namespace: "games", Name: "r", Node: "n1", State: agones.StateReady},
			},
			occupied: 1, free: 3,
		},
		{
			name: "Reserved and unknown states count as occupied",
			node: agonesNode("n1", nil, false),
			pods: []*corev1.Pod{gsPod("a", "n1", "1"), gsPod("b", "n1", "1")},
			servers: []agones.GameServer{
				{Namespace: "games", Name: "a", Node: "n1", State: agones.StateReserved},
				{Namespace: "games", Name: "b", Node: "n1", State: "SomethingNew"},
			},
			occupied: 2, free: 2,
		},
		{
			name:     "a labelled pod that is no GameServer takes room but is not a session",
			node:     agonesNode("n1", nil, false),
			pods:     []*corev1.Pod{gsPod("other", "n1", "1")},
			occupied: 0, free: 3,
		},
		{
			name: "a cordoned node with only Ready servers is empty: its expiry clock runs",
			node: agonesNode("n1", swell, true),
			pods: []*corev1.Pod{gsPod("r1", "n1", "1"), gsPod("r2", "n1", "1")},
			servers: []agones.GameServer{
				{Namespace: "games", Name: "r1", Node: "n1", State: agones.StateReady},
				{Namespace: "games", Name: "r2", Node: "n1", State: agones.StateReady},
			},
			occupied: 0, free: 4, emptySinc: true,
		},
		{
			name: "a cordoned node with an Allocated server is not empty",
			node: agonesNode("n1", swell, true),
			pods: []*corev1.Pod{gsPod("a", "n1", "1")},
			servers: []agones.GameServer{
				{Namespace: "games", Name: "a", Node: "n1", State: agones.StateAllocated},
			},
			occupied: 1, free: 3,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := AgonesNodeState(c.node, c.pods, c.servers)
			if st.ServerPods != c.occupied {
				t.Errorf("occupied slots %d, want %d", st.ServerPods, c.occupied)
			}
			if got := policy.FreeSlots(policy.NodeCapacity{Allocatable: st.Allocatable, Requested: st.Requested}, slot); got != c.free {
				t.Errorf("free slots %d, want %d", got, c.free)
			}
			if got := !st.EmptySince.IsZero(); got != c.emptySinc {
				t.Errorf("expiry clock running %v, want %v", got, c.emptySinc)
			}
		})
	}
}

func TestAssessAgonesDrain(t *testing.T) {
	servers := labels.SelectorFromSet(labels.Set{"app": "game"})
	pods := []*corev1.Pod{gsPod("a", "n1", "1"), gsPod("r", "n1", "1"), gsPod("loose", "n1", "1")}
	gss := []agones.GameServer{
		{Namespace: "games", Name: "a", Node: "n1", State: agones.StateAllocated},
		{Namespace: "games", Name: "r", Node: "n1", State: agones.StateReady},
	}
	v := AssessAgonesDrain(pods, servers, gss)
	var blockers []string
	for _, b := range v.Blockers {
		blockers = append(blockers, b.String())
	}
	want := []string{"games/a: Agones GameServer Allocated", "games/loose: " + AssessDrain(pods[2:], servers).Blockers[0].Reason}
	if !reflect.DeepEqual(blockers, want) {
		t.Errorf("blockers %q, want %q", blockers, want)
	}
	if len(v.Evict) != 1 || v.Evict[0].Name != "r" {
		t.Errorf("evict %v, want the Ready server's pod r", v.Evict)
	}

	// Only Ready servers left: the node drains.
	v = AssessAgonesDrain(pods[1:2], servers, gss[1:])
	if len(v.Blockers) != 0 || len(v.Evict) != 1 {
		t.Errorf("only a Ready server: blockers %v evict %d, want none and 1", v.Blockers, len(v.Evict))
	}
	// A GameServer without a state yet blocks, named as such.
	v = AssessAgonesDrain(nil, servers, []agones.GameServer{{Namespace: "games", Name: "x", Node: "n1"}})
	if len(v.Blockers) != 1 || !strings.Contains(v.Blockers[0].Reason, "no state yet") {
		t.Errorf("stateless server: blockers %v", v.Blockers)
	}
}

func TestOccupancySourceConfig(t *testing.T) {
	base := map[string]string{
		"CLOUD_PROVIDER": "kwok", "NODE_SELECTOR": "pool=games", "SERVER_POD_LABEL_NAME": "app", "SERVER_POD_LABEL_VALUE": "game",
		"SERVER_CPU_RESOURCE_REQUEST": "1000",
	}
	for _, c := range []struct {
		value, err string
		agones     bool
	}{
		{value: "", agones: false},
		{value: "pods", agones: false},
		{value: "agones", agones: true},
		{value: "gameservers", err: `occupancy-source (env OCCUPANCY_SOURCE): "gameservers" is not an occupancy source`},
	} {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		if c.value != "" {
			m["OCCUPANCY_SOURCE"] = c.value
		}
		cfg, err := Load("", env(m))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.value, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", c.value, err)
		}
		if cfg.UsesAgones() != c.agones {
			t.Errorf("%q: agones %v, want %v", c.value, cfg.UsesAgones(), c.agones)
		}
	}
}

// A cluster without Agones: Start fails naming the resource, rather than
// waiting forever for a GameServer cache that cannot sync.
func TestAgonesWithoutGameServersFailsAtStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := Load("", env(map[string]string{
		"CLOUD_PROVIDER": "kwok", "NODE_SELECTOR": "pool=games", "SERVER_POD_LABEL_NAME": "app", "SERVER_POD_LABEL_VALUE": "game",
		"SERVER_CPU_RESOURCE_REQUEST": "1000", "OCCUPANCY_SOURCE": "agones",
	}))
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	prov, err := NewProvider(ctx, cfg, client)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Config: cfg, Client: client, Provider: prov, Recorder: record.NewFakeRecorder(10)}); err == nil ||
		!strings.Contains(err.Error(), "occupancy-source=agones needs a dynamic client") {
		t.Fatalf("New without a dynamic client: %v", err)
	}
	// Never dialled: the discovery check fails first.
	dyn, err := dynamic.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: cfg, Client: client, Dynamic: dyn, Provider: prov, Recorder: record.NewFakeRecorder(10)})
	if err != nil {
		t.Fatal(err)
	}
	stop, err := s.Start(ctx)
	defer func() {
		cancel() // the informers end with ctx; stop waits for them
		stop()
	}()
	if err == nil || !strings.Contains(err.Error(), "gameservers.agones.dev not served") {
		t.Fatalf("Start on a cluster without GameServers: %v, want an error naming gameservers.agones.dev", err)
	}
	t.Log(err)
}
