package nodepool

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// noProvider stands in where the benchmark never acts.
type noProvider struct{}

func (noProvider) Size(context.Context) (int, error)            { return 0, nil }
func (noProvider) Resize(context.Context, int) error            { return nil }
func (noProvider) Delete(context.Context, []*corev1.Node) error { return nil }

// benchScaler fills informer-style indexers with nodes and totalPods
// server pods (1 CPU each on 48-CPU nodes); every tenth node is cordoned
// by Swell and empty, so every rule has work to do.
func benchScaler(b *testing.B, nodes, totalPods int) *Scaler {
	b.Helper()
	nodeIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	podIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{nodeIndex: podNode})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("48"), corev1.ResourceMemory: resource.MustParse("192Gi"), corev1.ResourcePods: resource.MustParse("110")}
	req := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("2Gi")}
	for i := range nodes {
		n := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%04d", i), Labels: map[string]string{"pool": "games"}, Annotations: map[string]string{}},
			Status:     corev1.NodeStatus{Allocatable: alloc, Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
		}
		open := nodes - (nodes+9)/10
		pods := totalPods / open
		if i%10 != 0 && (i-i/10-1) < totalPods%open {
			pods++
		}
		if i%10 == 0 {
			n.Spec.Unschedulable = true
			n.Annotations[CordonedAtAnnotation] = now.Add(-time.Hour).Format(time.RFC3339Nano)
			pods = 0
		}
		if err := nodeIdx.Add(n); err != nil {
			b.Fatal(err)
		}
		for j := range pods {
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("gs-%d-%d", i, j), Namespace: "games", Labels: map[string]string{"app": "game"}},
				Spec:       corev1.PodSpec{NodeName: n.Name, Containers: []corev1.Container{{Name: "gs", Resources: corev1.ResourceRequirements{Requests: req}}}},
				Status:     corev1.PodStatus{Phase: corev1.PodRunning},
			}
			if err := podIdx.Add(p); err != nil {
				b.Fatal(err)
			}
		}
	}
	cfg := Config{
		NodeSelector: labels.SelectorFromSet(labels.Set{"pool": "games"}), ServerPodLabelName: "app", ServerPodLabelValue: "game",
		Slot: policy.Resources{"cpu": 1000, "memory": 2 << 30}, Buffer: policy.Buffer{Absolute: 50, Percent: 5},
		MinNodes: 10, MaxNodes: 2000, EmptyNodeExpiration: time.Minute,
	}
	return &Scaler{
		cfg: cfg, provider: noProvider{}, clock: clocktesting.NewFakeClock(now), servers: cfg.ServerPodSelector(),
		cache: &Cache{nodes: listerscorev1.NewNodeLister(nodeIdx), pods: podIdx}, state: NewState(),
	}
}

// BenchmarkDecisionPass1000Nodes30000Pods is one full decision pass from
// the cache: list nodes, gather each node's pods from the index, build
// the snapshot and run Plan. It prints figures; it asserts no speed.
func BenchmarkDecisionPass1000Nodes30000Pods(b *testing.B) {
	s := benchScaler(b, 1000, 30000)
	var d Decision
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		nodes, err := s.cache.nodes.List(labels.Everything())
		if err != nil {
			b.Fatal(err)
		}
		in, _, _ := s.input(nodes)
		d = Plan(in)
	}
	b.ReportMetric(float64(d.InUse), "pods")
	b.ReportMetric(float64(len(d.Delete)+len(d.Cordon)+len(d.Uncordon)), "actions")
}

// BenchmarkPlan1000Nodes is Plan alone on an already built snapshot.
func BenchmarkPlan1000Nodes(b *testing.B) {
	s := benchScaler(b, 1000, 30000)
	nodes, _ := s.cache.nodes.List(labels.Everything())
	in, _, _ := s.input(nodes)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		Plan(in)
	}
}
