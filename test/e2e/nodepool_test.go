package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// The pool's own labels keep it apart from the shared kwok-0..2 nodes.
const (
	poolLabel    = "swell.dev/e2e-pool"
	poolValue    = "burst"
	poolSelector = poolLabel + "=" + poolValue
	serverLabel  = "swell.dev/e2e-server"
	poolMin      = 1
	poolMax      = 5
	buffer       = 3
)

// nodepoolConfig is a kubescaler config file plus Swell's kwok keys: the
// same file `swell nodepool --config` reads.
var nodepoolConfig = fmt.Sprintf(`cloud-provider: kwok
node-pool-name: e2e-burst
node-selector: %q
minimum-node-pool-size: %d
maximum-node-pool-size: %d
server-pod-label-name: %s
server-pod-label-value: %s
buffer-slot-size: %d
scale-loop-tick-sec: 0.5
server-cpu-resource-request: 1000
empty-node-expiration-sec: 2
resize-cooldown-sec: 1
metrics-bind-address: "0"
kwok-node-cpu: 4
kwok-node-memory: 16Gi
`, poolSelector, poolMin, poolMax, serverLabel, poolValue, buffer)

// TestNodePoolBuffersBurstsAndShrinks runs `swell nodepool`'s scaler with
// the kwok provider against the real scheduler: server pods arrive in
// bursts and the buffer is restored; they leave and surplus nodes are
// cordoned, then deleted once empty past the expiry. Across the run no
// node with a server pod is deleted and the pool stays within [min, max].
func TestNodePoolBuffersBurstsAndShrinks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	t.Cleanup(func() { deletePoolNodes(t) })

	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(nodepoolConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := nodepool.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	prov, err := nodepool.NewProvider(ctx, cfg, env.Clientset)
	if err != nil {
		t.Fatal(err)
	}
	scaler, err := nodepool.New(nodepool.Options{Config: cfg, Client: env.Clientset, Provider: prov})
	if err != nil {
		t.Fatal(err)
	}
	mon := watchPool(ctx, t)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- scaler.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("scaler: %v", err)
		}
	}()

	waitBuffer(ctx, t, ns, "the initial buffer", 0)

	createServers(ctx, t, ns, 0, 6)
	waitBuffer(ctx, t, ns, "the buffer after a burst of 6", 6)

	createServers(ctx, t, ns, 6, 8)
	waitBuffer(ctx, t, ns, "the buffer after a burst of 8 more", 14)

	for i := range 12 {
		deleteServer(ctx, t, ns, i)
	}
	waitFor(ctx, t, "surplus cordoned and empty nodes deleted", func() (bool, error) {
		st, err := poolState(ctx, ns)
		return err == nil && st.emptySwellCordoned == 0 && st.free >= buffer && st.nodes == 2, err
	})
	for i := 12; i < 14; i++ {
		assertRunning(ctx, t, ns, i)
	}

	for i := 12; i < 14; i++ {
		deleteServer(ctx, t, ns, i)
	}
	waitFor(ctx, t, "the pool back at its minimum", func() (bool, error) {
		st, err := poolState(ctx, ns)
		return err == nil && st.nodes == poolMin && st.free >= buffer, err
	})

	r := mon.stop()
	t.Logf("pool sizes seen: min %d max %d; nodes deleted: %d", r.minSeen, r.maxSeen, r.deleted)
	for _, v := range r.violations {
		t.Error(v)
	}
	if r.maxSeen > poolMax || r.minSeen < poolMin {
		t.Errorf("pool size left [%d, %d]: saw %d..%d", poolMin, poolMax, r.minSeen, r.maxSeen)
	}
	if r.deleted == 0 {
		t.Error("no node was deleted")
	}
}

// pool is the cluster as the test sees it, computed from the API server
// independently of the scaler.
type pool struct {
	nodes, swellCordoned, emptySwellCordoned int
	free                                     int64
	running                                  int
}

func poolState(ctx context.Context, ns string) (pool, error) {
	return readPool(ctx, ns, poolSelector, serverLabel)
}

// readPool reads a pool's nodes (by nodeSelector) and server pods (by
// podSelector in ns) from the API server; both node-pool suites use it.
func readPool(ctx context.Context, ns, nodeSelector, podSelector string) (pool, error) {
	nodes, err := env.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: nodeSelector})
	if err != nil {
		return pool{}, err
	}
	pods, err := env.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: podSelector})
	if err != nil {
		return pool{}, err
	}
	perNode := map[string]int{}
	st := pool{}
	for _, p := range pods.Items {
		if p.Spec.NodeName != "" {
			perNode[p.Spec.NodeName]++
		}
		if p.Status.Phase == corev1.PodRunning {
			st.running++
		}
	}
	for _, n := range nodes.Items {
		if n.DeletionTimestamp != nil {
			continue
		}
		st.nodes++
		_, swell := n.Annotations[nodepool.CordonedAtAnnotation]
		switch {
		case n.Spec.Unschedulable && swell:
			st.swellCordoned++
			if perNode[n.Name] == 0 {
				st.emptySwellCordoned++
			}
		case !n.Spec.Unschedulable && nodeReady(&n):
			cpu := n.Status.Allocatable[corev1.ResourceCPU]
			st.free += cpu.MilliValue()/1000 - int64(perNode[n.Name])
		}
	}
	return st, nil
}

// waitBuffer waits until running servers are all up and the pool holds
// at least the buffer in free slots on ready schedulable nodes.
func waitBuffer(ctx context.Context, t *testing.T, ns, what string, running int) {
	t.Helper()
	waitFor(ctx, t, what, func() (bool, error) {
		st, err := poolState(ctx, ns)
		return err == nil && st.running == running && st.free >= buffer, err
	})
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func serverName(i int) string { return fmt.Sprintf("gs-%02d", i) }

// createServers creates n dedicated-server pods at once (a burst); one
// CPU each, so four fit on a pool node.
func createServers(ctx context.Context, t *testing.T, ns string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: serverName(i), Namespace: ns, Labels: map[string]string{serverLabel: poolValue}},
			Spec: corev1.PodSpec{
				NodeSelector:                  map[string]string{poolLabel: poolValue},
				TerminationGracePeriodSeconds: ptr.To[int64](0),
				Containers: []corev1.Container{{Name: "server", Image: "registry.invalid/game-server:1", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("256Mi")},
				}}},
			},
		}
		createPod(ctx, t, pod)
	}
}

func deleteServer(ctx context.Context, t *testing.T, ns string, i int) {
	t.Helper()
	if err := env.Clientset.CoreV1().Pods(ns).Delete(ctx, serverName(i), metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatalf("delete server %s: %v", serverName(i), err)
	}
}

func assertRunning(ctx context.Context, t *testing.T, ns string, i int) {
	t.Helper()
	p, err := env.Clientset.CoreV1().Pods(ns).Get(ctx, serverName(i), metav1.GetOptions{})
	if err != nil || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		t.Fatalf("server %s should still run: %v %v", serverName(i), err, p.Status.Phase)
	}
}

// monitor records pool sizes and checks every node deletion as it happens.
type monitor struct {
	mu         sync.Mutex
	minSeen    int
	maxSeen    int
	reachedMin bool
	deleted    int
	violations []string
	cancel     context.CancelFunc
	done       chan struct{}
}

// watchPool watches the pool's nodes: each deletion must find no server
// pod bound to the node, and the live size must stay within [min, max]
// once the pool first reached its minimum.
func watchPool(ctx context.Context, t *testing.T) *monitor {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	m := &monitor{minSeen: poolMax + 1, cancel: cancel, done: make(chan struct{})}
	w, err := env.Clientset.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{LabelSelector: poolSelector})
	if err != nil {
		t.Fatalf("watch pool nodes: %v", err)
	}
	go func() {
		defer close(m.done)
		defer w.Stop()
		live := map[string]bool{}
		for ev := range w.ResultChan() {
			n, ok := ev.Object.(*corev1.Node)
			if !ok {
				continue
			}
			switch ev.Type {
			case watch.Added:
				live[n.Name] = true
			case watch.Deleted:
				delete(live, n.Name)
				m.checkDeleted(ctx, n)
			}
			m.size(len(live))
		}
	}()
	return m
}

// checkDeleted checks a deleted node had no server pod and Swell's cordon
// annotation. Its lookup outlives the monitor's context: stop may cancel
// that while the last deletion is being checked.
func (m *monitor) checkDeleted(ctx context.Context, n *corev1.Node) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	pods, err := env.Clientset.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		LabelSelector: serverLabel,
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", n.Name).String(),
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deleted++
	if err != nil {
		m.violations = append(m.violations, fmt.Sprintf("check deleted node %s: %v", n.Name, err))
		return
	}
	for _, p := range pods.Items {
		m.violations = append(m.violations, fmt.Sprintf("node %s was deleted with server pod %s on it", n.Name, p.Name))
	}
	if _, ok := n.Annotations[nodepool.CordonedAtAnnotation]; !ok {
		m.violations = append(m.violations, fmt.Sprintf("node %s was deleted without Swell's cordon annotation", n.Name))
	}
}

func (m *monitor) size(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n >= poolMin {
		m.reachedMin = true
	}
	if !m.reachedMin {
		return
	}
	m.minSeen, m.maxSeen = min(m.minSeen, n), max(m.maxSeen, n)
}

type monitorResult struct {
	minSeen, maxSeen, deleted int
	violations                []string
}

func (m *monitor) stop() monitorResult {
	m.cancel()
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return monitorResult{m.minSeen, m.maxSeen, m.deleted, m.violations}
}

// deletePoolNodes removes whatever the test's pool left behind, so the
// shared environment's other tests never see it.
func deletePoolNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := env.Clientset.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: poolSelector})
	if err != nil {
		t.Logf("clean up pool nodes: %v", err)
	}
}
