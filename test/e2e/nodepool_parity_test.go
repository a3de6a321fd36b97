package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// The parity pool keeps apart from the other node-pool suites by its own
// pool label value and server label.
const (
	parityPoolValue      = "parity"
	paritySelector       = poolLabel + "=" + parityPoolValue
	parityServerLabel    = "swell.dev/e2e-parity-server"
	parityBuffer         = 3
	paritySlotsPerNode   = 4
	parityMin, parityMax = 1, 6
	// parityBootGrace is what a below-buffer episode may last beyond the
	// longest node boot: the scheduler binding the burst, a pass, the
	// provider's create call, on a machine shared with other suites.
	parityBootGrace = 20 * time.Second
)

// parityConfig is kubescaler's example config (the 15 keys, no Swell
// addition such as resize-cooldown-sec) with the kwok provider and short
// times filled in, the way a migrating user would run it.
var parityConfig = fmt.Sprintf(`cloud-provider: kwok
cloud-provider-token: ""
cluster-name: ""
node-pool-name: e2e-parity
node-selector: %q
cluster-kube-config-master-url:
cluster-kube-config-path:
minimum-node-pool-size: %d
maximum-node-pool-size: %d
server-pod-label-name: %s
server-pod-label-value: %s
buffer-slot-size: %d
scale-loop-tick-sec: 1
server-cpu-resource-request: 1000
empty-node-expiration-sec: 2
`, paritySelector, parityMin, parityMax, parityServerLabel, parityPoolValue, parityBuffer)

// TestNodePoolParity runs kubescaler's own config through `swell
// nodepool`'s scaler on kwok with the real scheduler, through the
// scenario kubescaler users meet: a burst, a re-burst within 30 s while
// the first nodes boot, servers leaving one at a time, and three pending
// servers all along whose node selector names another pool. It prints
// time below the buffer and node-seconds, and checks:
//   - the re-burst is answered without a resize held back (no cooldown
//     applies to a kubescaler config);
//   - servers that cannot land on the pool never make it grow;
//   - the pool ends at the fewest nodes the remaining servers allow
//     (worked out from where they run, independently of the scaler);
//   - free slots are never below the buffer for longer than one node boot
//     (plus a grace for the scheduler and a pass);
//   - no node is deleted with a server on it.
//
// kubescaler cannot run here (it only speaks DigitalOcean), so the
// comparison with its rule is the pure model in
// pkg/nodepool/plan_property_test.go; this test asserts the properties.
func TestNodePoolParity(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	t.Cleanup(func() { deleteNodesBySelector(t, paritySelector) })

	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(parityConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := nodepool.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatalf("load kubescaler's config: %v", err)
	}
	if cfg.ResizeCooldown != 0 {
		t.Fatalf("a kubescaler config got a resize cooldown of %s", cfg.ResizeCooldown)
	}
	prov, err := nodepool.NewProvider(ctx, cfg, env.Clientset)
	if err != nil {
		t.Fatal(err)
	}
	scaler, err := nodepool.New(nodepool.Options{Config: cfg, Client: env.Clientset, Provider: prov})
	if err != nil {
		t.Fatal(err)
	}
	passes := runParityScaler(ctx, t, scaler, cfg.Tick)

	waitWithin(ctx, t, time.Minute, "the initial pool (minimum size, buffer held)", func(ctx context.Context) (bool, error) {
		st, err := readPool(ctx, ns, paritySelector, parityServerLabel)
		return err == nil && st.nodes == parityMin && st.free >= parityBuffer, err
	})
	rec := recordParity(ctx, t, ns)

	// Three servers for another pool: pending forever, never demand here.
	for i := range 3 {
		createParityServer(ctx, t, ns, fmt.Sprintf("elsewhere-%d", i), "elsewhere")
	}
	seen, resized := passes.count(), passes.resizes()
	waitWithin(ctx, t, time.Minute, "5 passes after the pending servers for another pool", func(context.Context) (bool, error) {
		return passes.count() >= seen+5, nil
	})
	if st, err := readPool(ctx, ns, paritySelector, parityServerLabel); err != nil || st.nodes != parityMin || passes.resizes() != resized {
		t.Fatalf("servers that cannot land on the pool made it grow: %d nodes, %d resizes in %d passes (err %v)", st.nodes, passes.resizes()-resized, passes.count()-seen, err)
	}
	t.Logf("3 servers for another pool pending: %d passes, no resize, %d node", passes.count()-seen, parityMin)

	// Burst, then a re-burst as soon as the pool starts growing.
	burst1 := time.Now()
	for i := range 6 {
		createParityServer(ctx, t, ns, paritySrv(i), parityPoolValue)
	}
	waitWithin(ctx, t, time.Minute, "the pool growing for the first burst", func(ctx context.Context) (bool, error) {
		st, err := readPool(ctx, ns, paritySelector, parityServerLabel)
		return err == nil && st.nodes > parityMin, err
	})
	burst2 := time.Now()
	for i := 6; i < 12; i++ {
		createParityServer(ctx, t, ns, paritySrv(i), parityPoolValue)
	}
	waitWithin(ctx, t, 2*time.Minute, "12 servers running and the buffer held", func(ctx context.Context) (bool, error) {
		st, err := readPool(ctx, ns, paritySelector, parityServerLabel)
		return err == nil && st.running == 12 && st.free >= parityBuffer, err
	})
	t.Logf("re-burst %.1fs after the first; all 12 servers running %.1fs after it", burst2.Sub(burst1).Seconds(), time.Since(burst2).Seconds())
	if burst2.Sub(burst1) > 30*time.Second {
		t.Logf("note: the re-burst came %.1fs after the first (the machine is slow); the cooldown check below still holds", burst2.Sub(burst1).Seconds())
	}
	if held := passes.held(); held != 0 {
		t.Errorf("%d passes held a resize back for a cooldown; a kubescaler config has none", held)
	}

	// Servers leave one at a time, each seen by a pass before the next;
	// two stay, on different nodes.
	order, _ := departureOrder(ctx, t, ns, 12)
	for _, name := range order {
		seen := passes.count()
		if err := env.Clientset.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
		waitWithin(ctx, t, time.Minute, "a pass after "+name+" left", func(ctx context.Context) (bool, error) {
			_, err := env.Clientset.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err) && passes.count() > seen, nil
		})
	}
	var minimal int
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last pool seen: %s", last)
		}
	}()
	waitWithin(ctx, t, 2*time.Minute, "the pool at the fewest nodes the two servers allow", func(ctx context.Context) (bool, error) {
		st, err := readPool(ctx, ns, paritySelector, parityServerLabel)
		if err != nil {
			return false, err
		}
		minimal, err = minimalParityNodes(ctx, ns)
		last = fmt.Sprintf("%d nodes (fewest possible %d), %d Swell-cordoned of which %d empty, %d free slots", st.nodes, minimal, st.swellCordoned, st.emptySwellCordoned, st.free)
		return err == nil && st.nodes == minimal && st.emptySwellCordoned == 0 && st.free >= parityBuffer, err
	})

	r := rec.stop()
	t.Logf("side by side (kubescaler's config, kwok, real scheduler): time below buffer %.1fs in %d episodes (longest %.1fs; longest node boot %.1fs); node-seconds %.0f; peak %d nodes; end %d nodes (fewest possible %d); %d passes, %d resizes, 0 held by a cooldown",
		r.below.Seconds(), len(r.episodes), r.longest().Seconds(), r.longestBoot().Seconds(), r.nodeSeconds, r.peak, r.nodes, minimal, passes.count(), passes.resizes())
	for _, v := range r.violations {
		t.Error(v)
	}
	if limit := r.longestBoot() + parityBootGrace; r.longest() > limit {
		t.Errorf("free slots stayed below the buffer for %.1fs, longer than one boot (%.1fs) plus %s", r.longest().Seconds(), r.longestBoot().Seconds(), parityBootGrace)
	}
	if r.peak > parityMax {
		t.Errorf("pool grew to %d nodes, maximum %d", r.peak, parityMax)
	}
	if len(r.boots) == 0 {
		t.Error("no node boot was seen: the scenario never grew the pool")
	}
}

func paritySrv(i int) string { return fmt.Sprintf("gs-%02d", i) }

// createParityServer creates one 1-CPU server pod whose node selector
// names pool (the parity pool, or another).
func createParityServer(ctx context.Context, t *testing.T, ns, name, pool string) {
	t.Helper()
	createPod(ctx, t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{parityServerLabel: parityPoolValue}},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{poolLabel: pool},
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{Name: "server", Image: "registry.invalid/game-server:1", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("256Mi")},
			}}},
		},
	})
}

// departureOrder orders the n servers' departures the way that trips a
// rule which skips the emptiest node: nodes are drained emptiest first,
// one server at a time, and one server stays on each of the two fullest
// nodes (drained last, down to that one). It returns the order and the
// two servers that stay.
func departureOrder(ctx context.Context, t *testing.T, ns string, n int) (order []string, keep map[string]bool) {
	t.Helper()
	byNode := map[string][]string{}
	for i := range n {
		p, err := env.Clientset.CoreV1().Pods(ns).Get(ctx, paritySrv(i), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Spec.NodeName == "" {
			t.Fatalf("server %s is not bound", p.Name)
		}
		byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p.Name)
	}
	nodes := make([]string, 0, len(byNode))
	for name := range byNode {
		nodes = append(nodes, name)
	}
	if len(nodes) < 2 {
		t.Fatalf("the %d servers run on fewer than 2 nodes: %v", n, byNode)
	}
	sort.Slice(nodes, func(i, j int) bool {
		if a, b := len(byNode[nodes[i]]), len(byNode[nodes[j]]); a != b {
			return a < b
		}
		return nodes[i] < nodes[j]
	})
	keep = map[string]bool{}
	placement := make([]string, 0, len(nodes))
	for k, name := range nodes {
		servers := byNode[name]
		placement = append(placement, fmt.Sprintf("%s:%d", name, len(servers)))
		if k >= len(nodes)-2 {
			keep[servers[0]] = true
			servers = servers[1:]
		}
		order = append(order, servers...)
	}
	t.Logf("servers per node before departures (emptiest first): %v; staying: %v", placement, keep)
	return order, keep
}

// minimalParityNodes is the fewest nodes any autoscaler could keep with
// the servers where they run: every node with a server stays, and empty
// nodes only for the buffer the busy nodes cannot hold.
func minimalParityNodes(ctx context.Context, ns string) (int, error) {
	pods, err := env.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: parityServerLabel})
	if err != nil {
		return 0, err
	}
	perNode := map[string]int{}
	for _, p := range pods.Items {
		if p.Spec.NodeName != "" && p.DeletionTimestamp == nil {
			perNode[p.Spec.NodeName]++
		}
	}
	free := 0
	for _, c := range perNode {
		free += paritySlotsPerNode - c
	}
	empties := 0
	if free < parityBuffer {
		empties = (parityBuffer - free + paritySlotsPerNode - 1) / paritySlotsPerNode
	}
	return max(parityMin, len(perNode)+empties), nil
}

// parityPasses drives the scaler's passes (as Run does) and counts them,
// the resizes they ordered and the ones a cooldown held back.
type parityPasses struct {
	mu                     sync.Mutex
	passes, resized, holds int
}

func (p *parityPasses) count() int   { p.mu.Lock(); defer p.mu.Unlock(); return p.passes }
func (p *parityPasses) resizes() int { p.mu.Lock(); defer p.mu.Unlock(); return p.resized }
func (p *parityPasses) held() int    { p.mu.Lock(); defer p.mu.Unlock(); return p.holds }

func runParityScaler(ctx context.Context, t *testing.T, s *nodepool.Scaler, tick time.Duration) *parityPasses {
	t.Helper()
	runCtx, stop := context.WithCancel(ctx)
	stopInformers, err := s.Start(runCtx)
	if err != nil {
		stop()
		t.Fatalf("start scaler: %v", err)
	}
	p := &parityPasses{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ticker := time.NewTicker(tick)
		defer ticker.Stop()
		for {
			d, err := s.Pass(runCtx)
			if runCtx.Err() != nil {
				return
			}
			if err != nil {
				t.Logf("pass: %v", err)
			}
			p.mu.Lock()
			p.passes++
			if d.Resize > 0 {
				p.resized++
			}
			if strings.Contains(strings.Join(d.Notes, ";"), "cooldown") {
				p.holds++
			}
			p.mu.Unlock()
			select {
			case <-runCtx.Done():
				return
			case <-s.Triggered():
			case <-ticker.C:
			}
		}
	}()
	t.Cleanup(func() {
		stop()
		<-done
		stopInformers()
	})
	return p
}

// parityRecorder follows the pool from watch events: free slots on Ready
// schedulable nodes against the buffer, nodes alive over time, node boots
// (created → Ready), and every node deletion against the servers bound.
type parityRecorder struct {
	mu          sync.Mutex
	nodes       map[string]*parityNode
	servers     map[string]string // server pod → node
	last        time.Time
	belowSince  time.Time
	below       time.Duration
	episodes    []time.Duration
	nodeSeconds float64
	peak        int
	boots       []time.Duration
	violations  []string
	cancel      context.CancelFunc
	wg          sync.WaitGroup
}

type parityNode struct {
	ready, unschedulable bool
	created              time.Time
	booted               bool
}

// parityResult is what the recorder saw.
type parityResult struct {
	below       time.Duration
	episodes    []time.Duration
	nodeSeconds float64
	peak, nodes int
	boots       []time.Duration
	violations  []string
}

func (r parityResult) longest() time.Duration { return maxDuration(r.episodes) }

func (r parityResult) longestBoot() time.Duration { return maxDuration(r.boots) }

func maxDuration(ds []time.Duration) time.Duration {
	out := time.Duration(0)
	for _, d := range ds {
		out = max(out, d)
	}
	return out
}

func recordParity(ctx context.Context, t *testing.T, ns string) *parityRecorder {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	r := &parityRecorder{nodes: map[string]*parityNode{}, servers: map[string]string{}, last: time.Now(), cancel: cancel}
	nw, err := env.Clientset.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{LabelSelector: paritySelector})
	if err != nil {
		t.Fatalf("watch pool nodes: %v", err)
	}
	pw, err := env.Clientset.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: parityServerLabel})
	if err != nil {
		t.Fatalf("watch servers: %v", err)
	}
	start := time.Now()
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		defer nw.Stop()
		for ev := range nw.ResultChan() {
			if n, ok := ev.Object.(*corev1.Node); ok {
				r.node(ev.Type, n, start)
			}
		}
	}()
	go func() {
		defer r.wg.Done()
		defer pw.Stop()
		for ev := range pw.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok {
				r.pod(ev.Type, p)
			}
		}
	}()
	return r
}

// account integrates the state up to now; callers hold mu.
func (r *parityRecorder) account(now time.Time) {
	dt := now.Sub(r.last)
	r.nodeSeconds += float64(len(r.nodes)) * dt.Seconds()
	if !r.belowSince.IsZero() {
		r.below += dt
	}
	r.last = now
}

// evaluate opens or closes a below-buffer episode; callers hold mu.
func (r *parityRecorder) evaluate(now time.Time) {
	perNode := map[string]int{}
	for _, n := range r.servers {
		perNode[n]++
	}
	free := 0
	for name, n := range r.nodes {
		if n.ready && !n.unschedulable {
			free += paritySlotsPerNode - perNode[name]
		}
	}
	switch below := free < parityBuffer; {
	case below && r.belowSince.IsZero():
		r.belowSince = now
	case !below && !r.belowSince.IsZero():
		r.episodes = append(r.episodes, now.Sub(r.belowSince))
		r.belowSince = time.Time{}
	}
	r.peak = max(r.peak, len(r.nodes))
}

func (r *parityRecorder) node(typ watch.EventType, n *corev1.Node, start time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	r.account(now)
	defer r.evaluate(now)
	if typ == watch.Deleted || n.DeletionTimestamp != nil {
		if _, ok := r.nodes[n.Name]; ok {
			for pod, on := range r.servers {
				if on == n.Name {
					r.violations = append(r.violations, fmt.Sprintf("node %s deleted with server %s on it", n.Name, pod))
				}
			}
		}
		delete(r.nodes, n.Name)
		return
	}
	st, ok := r.nodes[n.Name]
	if !ok {
		st = &parityNode{created: n.CreationTimestamp.Time, booted: n.CreationTimestamp.Time.Before(start.Add(-time.Second))}
		r.nodes[n.Name] = st
	}
	st.ready, st.unschedulable = nodeReady(n), n.Spec.Unschedulable
	if st.ready && !st.booted {
		st.booted = true
		r.boots = append(r.boots, now.Sub(st.created))
	}
}

func (r *parityRecorder) pod(typ watch.EventType, p *corev1.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	r.account(now)
	defer r.evaluate(now)
	if typ == watch.Deleted || p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		delete(r.servers, p.Name)
		return
	}
	r.servers[p.Name] = p.Spec.NodeName
}

func (r *parityRecorder) stop() parityResult {
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	r.account(now)
	if !r.belowSince.IsZero() {
		r.episodes = append(r.episodes, now.Sub(r.belowSince))
	}
	sort.Slice(r.boots, func(i, j int) bool { return r.boots[i] < r.boots[j] })
	return parityResult{below: r.below, episodes: r.episodes, nodeSeconds: r.nodeSeconds, peak: r.peak, nodes: len(r.nodes), boots: r.boots, violations: r.violations}
}

// deleteNodesBySelector removes the nodes a pool left behind.
func deleteNodesBySelector(t *testing.T, selector string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := env.Clientset.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: selector}); err != nil {
		t.Logf("clean up pool nodes: %v", err)
	}
}
