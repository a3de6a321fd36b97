package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// The safety suite's pools: each test has its own node label value, so no
// test sees another's nodes, nor the shared kwok-0..2 nodes.
const (
	safetyLabel       = "swell.dev/e2e-safety"
	safetyServerLabel = "swell.dev/e2e-safety-server"
	// safetyValidation is the drain validation delay of the suite's
	// `swell nodepool` scalers.
	safetyValidation = time.Second
)

// safetyPool is a one-node kwok pool and a `swell nodepool` scaler whose
// passes the test runs itself, so "nothing was deleted" is a count of
// passes that each had every chance to delete.
type safetyPool struct {
	t        *testing.T
	ctx      context.Context
	ns       string
	selector string
	node     string
	scaler   *nodepool.Scaler
}

// newSafetyPool creates the pool's node through the kwok provider (minimum
// 0, buffer 0: the node is surplus as soon as the scaler runs) and a scaler
// with the given expiry. The scaler is not started until start.
func newSafetyPool(ctx context.Context, t *testing.T, ns, name string, expirySec int) *safetyPool {
	t.Helper()
	return newSafetyPoolWith(ctx, t, ns, name, expirySec, "", nil)
}

// newSafetyPoolWith is newSafetyPool with more config lines (extra) and the
// dynamic client the scaler reads other kinds with (nil: none).
func newSafetyPoolWith(ctx context.Context, t *testing.T, ns, name string, expirySec int, extra string, dyn dynamic.Interface) *safetyPool {
	t.Helper()
	p := &safetyPool{t: t, ctx: ctx, ns: ns, selector: safetyLabel + "=" + name}
	t.Cleanup(func() { deleteNodes(t, p.selector) })
	cfgText := fmt.Sprintf(`cloud-provider: kwok
node-pool-name: e2e-safety-%s
node-selector: %q
minimum-node-pool-size: 0
maximum-node-pool-size: 2
server-pod-label-name: %s
server-pod-label-value: %s
buffer-slot-size: 0
scale-loop-tick-sec: 0.5
server-cpu-resource-request: 1000
empty-node-expiration-sec: %d
resize-cooldown-sec: 0
metrics-bind-address: "0"
kwok-node-cpu: 4
kwok-node-memory: 16Gi
%s`, name, p.selector, safetyServerLabel, name, expirySec, extra)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
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
	if err := prov.Resize(ctx, 1); err != nil {
		t.Fatalf("create the pool's node: %v", err)
	}
	waitFor(ctx, t, "the pool's node Ready", func() (bool, error) {
		nodes, err := env.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: p.selector})
		if err != nil || len(nodes.Items) != 1 {
			return false, err
		}
		p.node = nodes.Items[0].Name
		return nodeReady(&nodes.Items[0]), nil
	})
	events := record.NewBroadcaster()
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: env.Clientset.CoreV1().Events("")})
	t.Cleanup(events.Shutdown)
	p.scaler, err = nodepool.New(nodepool.Options{
		Config: cfg, Client: env.Clientset, Dynamic: dyn, Provider: prov, DrainValidationDelay: safetyValidation,
		Recorder: events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "swell-nodepool"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// start runs the scaler's cache (not its loop: the test runs passes).
func (p *safetyPool) start() {
	p.t.Helper()
	stop, err := p.scaler.Start(p.ctx)
	p.t.Cleanup(stop)
	if err != nil {
		p.t.Fatal(err)
	}
}

// passes runs n passes, each when the scaler asks for one (a change, its
// drain timer) or after 200 ms, and calls check after each.
func (p *safetyPool) passes(n int, check func(i int, d nodepool.Decision)) {
	p.t.Helper()
	for i := range n {
		d, err := p.scaler.Pass(p.ctx)
		if err != nil {
			p.t.Fatalf("pass %d: %v", i, err)
		}
		check(i, d)
		select {
		case <-p.scaler.Triggered():
		case <-time.After(200 * time.Millisecond):
		case <-p.ctx.Done():
			p.t.Fatal(p.ctx.Err())
		}
	}
}

// passUntilDeleted runs passes until the node is gone from the API server
// and returns how many it took.
func (p *safetyPool) passUntilDeleted(what string) int {
	p.t.Helper()
	n := 0
	waitFor(p.ctx, p.t, what, func() (bool, error) {
		n++
		if _, err := p.scaler.Pass(p.ctx); err != nil {
			return false, err
		}
		_, err := env.Clientset.CoreV1().Nodes().Get(p.ctx, p.node, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	return n
}

func (p *safetyPool) nodeExists() bool {
	_, err := env.Clientset.CoreV1().Nodes().Get(p.ctx, p.node, metav1.GetOptions{})
	return err == nil
}

// workload creates a running non-server pod on the pool's node through the
// scheduler (node selector), with labels and annotations.
func (p *safetyPool) workload(name string, lbl, ann map[string]string, finalizers ...string) {
	p.t.Helper()
	createPod(p.ctx, p.t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.ns, Labels: lbl, Annotations: ann, Finalizers: finalizers},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{safetyLabel: strings.TrimPrefix(p.selector, safetyLabel+"=")},
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
			}}},
		},
	})
	waitFor(p.ctx, p.t, "pod "+name+" running on "+p.node, func() (bool, error) {
		got, err := env.Clientset.CoreV1().Pods(p.ns).Get(p.ctx, name, metav1.GetOptions{})
		return err == nil && got.Spec.NodeName == p.node && got.Status.Phase == corev1.PodRunning, err
	})
}

// waitCordonedAndEmptySince runs passes until Swell has cordoned the node
// and recorded when it became empty of server pods.
func (p *safetyPool) waitCordonedAndEmptySince() {
	p.t.Helper()
	waitFor(p.ctx, p.t, "the node cordoned by Swell with empty-since recorded", func() (bool, error) {
		if _, err := p.scaler.Pass(p.ctx); err != nil {
			return false, err
		}
		n, err := env.Clientset.CoreV1().Nodes().Get(p.ctx, p.node, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		_, cordoned := n.Annotations[nodepool.CordonedAtAnnotation]
		_, empty := n.Annotations[nodepool.EmptySinceAnnotation]
		return n.Spec.Unschedulable && cordoned && empty, nil
	})
}

// safetyDeletionWatch checks, at the moment each pool node is deleted, that the
// API server lists nothing on it but DaemonSet, mirror and finished pods.
type safetyDeletionWatch struct {
	mu         sync.Mutex
	deleted    []string
	violations []string
	cancel     context.CancelFunc
	done       chan struct{}
}

func safetyWatchDeletions(ctx context.Context, t *testing.T, selector string) *safetyDeletionWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	w, err := env.Clientset.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatalf("watch pool nodes: %v", err)
	}
	m := &safetyDeletionWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		defer w.Stop()
		for ev := range w.ResultChan() {
			if n, ok := ev.Object.(*corev1.Node); ok && ev.Type == watch.Deleted {
				m.check(ctx, n.Name)
			}
		}
	}()
	return m
}

func (m *safetyDeletionWatch) check(ctx context.Context, node string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	pods, err := env.Clientset.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(),
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deleted = append(m.deleted, node)
	if err != nil {
		m.violations = append(m.violations, fmt.Sprintf("check deleted node %s: %v", node, err))
		return
	}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || safetyDaemonSetPod(&p) {
			continue
		}
		m.violations = append(m.violations, fmt.Sprintf("node %s deleted with pod %s/%s on it (phase %s, terminating %v)", node, p.Namespace, p.Name, p.Status.Phase, p.DeletionTimestamp != nil))
	}
}

func (m *safetyDeletionWatch) stop() (deleted, violations []string) {
	m.cancel()
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.deleted, m.violations
}

// expectOnly stops the watch and fails the test unless exactly node was
// deleted, with nothing but DaemonSet or finished pods on it. It returns the
// deletions seen, for the test's log.
func (m *safetyDeletionWatch) expectOnly(t *testing.T, node string) []string {
	t.Helper()
	deleted, violations := m.stop()
	for _, v := range violations {
		t.Error(v)
	}
	if len(deleted) != 1 || deleted[0] != node {
		t.Errorf("deletions seen %v, want exactly %s", deleted, node)
	}
	return deleted
}

func safetyDaemonSetPod(p *corev1.Pod) bool {
	for _, r := range p.OwnerReferences {
		if r.Kind == "DaemonSet" && r.Controller != nil && *r.Controller {
			return true
		}
	}
	return false
}

// safetyAPIRequests sums apiserver_request_total from the API server's own
// /metrics over the series whose labels include every want pair.
func safetyAPIRequests(ctx context.Context, t *testing.T, want map[string]string) float64 {
	t.Helper()
	return sumAPIServer(ctx, t, "apiserver_request_total", want)
}

func safetyEvictionRequests(ctx context.Context, t *testing.T) float64 {
	return safetyAPIRequests(ctx, t, map[string]string{"resource": "pods", "subresource": "eviction", "verb": "POST"})
}

func safetyNodeDeletes(ctx context.Context, t *testing.T) float64 {
	return safetyAPIRequests(ctx, t, map[string]string{"resource": "nodes", "subresource": "", "verb": "DELETE"})
}

// safetyNodeEvent waits for an event on node with reason whose message holds
// every part.
func safetyNodeEvent(ctx context.Context, t *testing.T, node, reason string, parts ...string) string {
	t.Helper()
	var msg string
	waitFor(ctx, t, fmt.Sprintf("a %s event on %s naming %v", reason, node, parts), func() (bool, error) {
		evs, err := env.Clientset.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{
			FieldSelector: fields.AndSelectors(
				fields.OneTermEqualSelector("involvedObject.name", node),
				fields.OneTermEqualSelector("reason", reason),
			).String(),
		})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			ok := true
			for _, part := range parts {
				ok = ok && strings.Contains(e.Message, part)
			}
			if ok {
				msg = e.Message
				return true, nil
			}
		}
		return false, fmt.Errorf("%d %s events, none naming all of %v", len(evs.Items), reason, parts)
	})
	return msg
}

// TestNodePoolSafetyDrainsThroughEviction: a node with a non-server pod
// (and a DaemonSet pod) is drained through the Eviction API before it is
// deleted: the pod carries the API server's DisruptionTarget condition
// (EvictionByEvictionAPI), exactly one eviction is asked for (not the
// DaemonSet pod), and when the node is deleted the API server lists nothing
// on it but the DaemonSet pod.
func TestNodePoolSafetyDrainsThroughEviction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	p := newSafetyPool(ctx, t, ns, "drain", 0)

	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: ns},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec: corev1.PodSpec{
					NodeSelector:                  map[string]string{safetyLabel: "drain"},
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					Containers:                    []corev1.Container{{Name: "agent", Image: "registry.invalid/agent:1"}},
				},
			},
		},
	}
	if _, err := env.Clientset.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the DaemonSet pod running on the pool node", func() (bool, error) {
		pods, err := env.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=agent"})
		if err != nil || len(pods.Items) != 1 {
			return false, err
		}
		return pods.Items[0].Spec.NodeName == p.node && pods.Items[0].Status.Phase == corev1.PodRunning, nil
	})
	p.workload("web", map[string]string{"app": "web"}, nil)

	// The pod's transitions, from a watch: the eviction must show as the
	// API server's DisruptionTarget condition before the pod goes.
	var mu sync.Mutex
	var evictedByAPI, gone bool
	w, err := env.Clientset.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=web"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	go func() {
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			mu.Lock()
			for _, c := range pod.Status.Conditions {
				if c.Type == corev1.DisruptionTarget && c.Reason == "EvictionByEvictionAPI" {
					evictedByAPI = true
				}
			}
			if ev.Type == watch.Deleted {
				gone = true
			}
			mu.Unlock()
		}
	}()

	mon := safetyWatchDeletions(ctx, t, p.selector)
	evictionsBefore := safetyEvictionRequests(ctx, t)
	p.start()
	passes := p.passUntilDeleted("the node drained and deleted")
	evictions := safetyEvictionRequests(ctx, t) - evictionsBefore
	deleted := mon.expectOnly(t, p.node)
	t.Logf("node %s deleted after %d passes; eviction requests: %.0f; deletions seen: %v", p.node, passes, evictions, deleted)
	if evictions != 1 {
		t.Errorf("%.0f eviction requests, want 1 (web; the DaemonSet pod is never evicted)", evictions)
	}
	mu.Lock()
	defer mu.Unlock()
	if !evictedByAPI || !gone {
		t.Errorf("pod web: DisruptionTarget=EvictionByEvictionAPI seen %v, deleted %v", evictedByAPI, gone)
	}
	safetyNodeEvent(ctx, t, p.node, nodepool.ReasonDraining, ns+"/web")
}

// TestNodePoolSafetyPDBBlocksDeletion: a PodDisruptionBudget that allows no
// disruption (minAvailable 1 of 1) makes the API server refuse the eviction (429), and the node
// stays over many passes, each of which tried; the event names the pod and
// the budget. Once the budget is gone, the node is drained and deleted.
func TestNodePoolSafetyPDBBlocksDeletion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	p := newSafetyPool(ctx, t, ns, "pdb", 0)
	p.workload("db", map[string]string{"app": "db"}, nil)
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "db-budget", Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: ptr.To(intstr.FromInt32(1)),
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
		},
	}
	if _, err := env.Clientset.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the disruption controller to process the budget", func() (bool, error) {
		got, err := env.Clientset.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, pdb.Name, metav1.GetOptions{})
		return err == nil && got.Status.ObservedGeneration == got.Generation && got.Status.CurrentHealthy == 1 && got.Status.DisruptionsAllowed == 0, err
	})

	mon := safetyWatchDeletions(ctx, t, p.selector)
	p.start()
	p.waitCordonedAndEmptySince()
	evictionsBefore := safetyEvictionRequests(ctx, t)
	const n = 15 // 15 passes of >= 200 ms: several times the 1 s validation delay
	p.passes(n, func(i int, d nodepool.Decision) {
		if len(d.Delete) != 0 || !p.nodeExists() {
			t.Fatalf("pass %d deleted the node whose pod a budget protects: %+v", i, d)
		}
	})
	evictions := safetyEvictionRequests(ctx, t) - evictionsBefore
	got, err := env.Clientset.CoreV1().Pods(ns).Get(ctx, "db", metav1.GetOptions{})
	if err != nil || got.DeletionTimestamp != nil || got.Spec.NodeName != p.node {
		t.Fatalf("pod db must still run on %s: %v %+v", p.node, err, got.ObjectMeta)
	}
	if evictions < 2 {
		t.Fatalf("%.0f eviction requests over %d passes: the passes did not retry the drain", evictions, n)
	}
	msg := safetyNodeEvent(ctx, t, p.node, nodepool.ReasonDeletionBlocked, ns+"/db", "db-budget")
	t.Logf("%d passes, %.0f refused eviction requests, node kept; event: %s", n, evictions, msg)

	if err := env.Clientset.PolicyV1().PodDisruptionBudgets(ns).Delete(ctx, pdb.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	passes := p.passUntilDeleted("the node drained and deleted once the budget is gone")
	mon.expectOnly(t, p.node)
	t.Logf("budget deleted: node deleted after %d more passes", passes)
}

// TestNodePoolSafetySafeToEvictFalseBlocksDeletion: a pod annotated
// cluster-autoscaler.kubernetes.io/safe-to-evict: "false" is never
// evicted and keeps its node over many passes; the event names the pod
// and the annotation. Removing the annotation lets the drain proceed.
func TestNodePoolSafetySafeToEvictFalseBlocksDeletion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	p := newSafetyPool(ctx, t, ns, "safe-to-evict", 0)
	p.workload("batch", nil, map[string]string{nodepool.SafeToEvictAnnotation: "false"})

	mon := safetyWatchDeletions(ctx, t, p.selector)
	p.start()
	p.waitCordonedAndEmptySince()
	evictionsBefore := safetyEvictionRequests(ctx, t)
	const n = 15
	p.passes(n, func(i int, d nodepool.Decision) {
		if len(d.Delete) != 0 || !p.nodeExists() {
			t.Fatalf("pass %d deleted a node holding a safe-to-evict=false pod: %+v", i, d)
		}
		if !strings.Contains(strings.Join(d.Notes, "\n"), ns+"/batch") {
			t.Fatalf("pass %d: the notes do not say what keeps the node: %v", i, d.Notes)
		}
	})
	if evictions := safetyEvictionRequests(ctx, t) - evictionsBefore; evictions != 0 {
		t.Fatalf("%.0f eviction requests for a safe-to-evict=false pod", evictions)
	}
	msg := safetyNodeEvent(ctx, t, p.node, nodepool.ReasonDeletionBlocked, ns+"/batch", nodepool.SafeToEvictAnnotation+"=false")
	t.Logf("%d passes, no eviction, node kept; event: %s", n, msg)

	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:null}}}`, nodepool.SafeToEvictAnnotation)
	if _, err := env.Clientset.CoreV1().Pods(ns).Patch(ctx, "batch", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	passes := p.passUntilDeleted("the node drained and deleted once the annotation is gone")
	mon.expectOnly(t, p.node)
	t.Logf("annotation removed: node deleted after %d more passes", passes)
}

// TestNodePoolSafetyExpiryCountsFromEmpty: a node Swell cordoned an hour
// ago that became empty a minute ago (the annotations say so, as a
// restarted Swell would find them) is kept by a 10-minute expiry over many
// passes, and its empty-since is not moved; once it has been empty for 11
// minutes it is deleted.
func TestNodePoolSafetyExpiryCountsFromEmpty(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	p := newSafetyPool(ctx, t, ns, "expiry", 600)
	now := time.Now().UTC()
	emptySince := now.Add(-time.Minute).Format(time.RFC3339Nano)
	setAnnotations := func(cordoned, empty string) {
		t.Helper()
		patch := fmt.Appendf(nil, `{"spec":{"unschedulable":true},"metadata":{"annotations":{%q:%q,%q:%q}}}`,
			nodepool.CordonedAtAnnotation, cordoned, nodepool.EmptySinceAnnotation, empty)
		if _, err := env.Clientset.CoreV1().Nodes().Patch(ctx, p.node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setAnnotations(now.Add(-time.Hour).Format(time.RFC3339Nano), emptySince)

	mon := safetyWatchDeletions(ctx, t, p.selector)
	p.start()
	waitFor(ctx, t, "the scaler's cache to show the annotations", func() (bool, error) {
		d, err := p.scaler.Pass(ctx)
		return err == nil && d.Cordoned == 1, err
	})
	const n = 15
	p.passes(n, func(i int, d nodepool.Decision) {
		if len(d.Delete) != 0 || !p.nodeExists() {
			t.Fatalf("pass %d deleted a node empty for 1 min with a 10 min expiry (cordoned 1 h ago): %+v", i, d)
		}
		if strings.Contains(strings.Join(d.Notes, "\n"), p.node) {
			t.Fatalf("pass %d began draining a node empty for 1 min: %v", i, d.Notes)
		}
	})
	node, err := env.Clientset.CoreV1().Nodes().Get(ctx, p.node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := node.Annotations[nodepool.EmptySinceAnnotation]; got != emptySince {
		t.Fatalf("empty-since moved from %s to %s", emptySince, got)
	}
	t.Logf("cordoned 1h ago, empty 1 min ago, expiry 10 min: %d passes, node kept", n)

	setAnnotations(now.Add(-time.Hour).Format(time.RFC3339Nano), now.Add(-11*time.Minute).Format(time.RFC3339Nano))
	passes := p.passUntilDeleted("the node deleted once empty for 11 min")
	mon.expectOnly(t, p.node)
	t.Logf("empty for 11 min: deleted after %d passes", passes)
	safetyNodeEvent(ctx, t, p.node, nodepool.ReasonDeleting, "empty of server pods for 11m")
}

// TestNodePoolSafetySpecEditDeletesNothingTwice runs the NodePoolScaler
// controller: its node is chosen for deletion and being drained (the
// evicted pod held in Terminating by a finalizer) when the spec is edited,
// which rebuilds the object's scaler; it is edited again during the drain's
// validation delay (the rebuilt scaler must keep the same re-check time, not
// start the delay over), and again while the deleted node itself lingers
// (held by a finalizer, as a cloud's node lingers while its machine shuts
// down). The API server's own counters show one eviction request and one
// node DELETE in all.
func TestNodePoolSafetySpecEditDeletesNothingTwice(t *testing.T) {
	kube := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	const value = "edit"
	selector := safetyLabel + "=" + value
	t.Cleanup(func() { deleteNodes(t, selector) })
	const hold = "swell.dev/e2e-hold"

	// The pool's node, made as the kwok provider makes them, with the
	// test's finalizer so that its deletion can be watched in flight.
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: "e2e-safety-edit-0", Finalizers: []string{hold},
			Labels:      map[string]string{safetyLabel: value, corev1.LabelHostname: "e2e-safety-edit-0", "type": "kwok"},
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
		},
		Status: corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("110")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("110")},
		},
	}
	if _, err := env.Clientset.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	unhold := func(kind string, patch func(context.Context, []byte) error) func() {
		return func() {
			if err := patch(context.Background(), []byte(`{"metadata":{"finalizers":null}}`)); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("release %s: %v", kind, err)
			}
		}
	}
	releaseNode := unhold("node", func(ctx context.Context, b []byte) error {
		_, err := env.Clientset.CoreV1().Nodes().Patch(ctx, node.Name, types.MergePatchType, b, metav1.PatchOptions{})
		return err
	})
	t.Cleanup(releaseNode)
	waitFor(ctx, t, "the pool node Ready", func() (bool, error) {
		n, err := env.Clientset.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		return err == nil && nodeReady(n), err
	})
	p := &safetyPool{t: t, ctx: ctx, ns: ns, selector: selector, node: node.Name}
	p.workload("web", map[string]string{"app": "web"}, nil, hold)
	releasePod := unhold("pod", func(ctx context.Context, b []byte) error {
		_, err := env.Clientset.CoreV1().Pods(ns).Patch(ctx, "web", types.MergePatchType, b, metav1.PatchOptions{})
		return err
	})
	t.Cleanup(releasePod)

	evictionsBefore, deletesBefore := safetyEvictionRequests(ctx, t), safetyNodeDeletes(ctx, t)
	nps := &swellv1.NodePoolScaler{
		ObjectMeta: metav1.ObjectMeta{Name: "edit", Namespace: ns},
		Spec: specFromConfigFile(t, fmt.Sprintf(`cloud-provider: kwok
node-pool-name: e2e-safety-edit
node-selector: %q
minimum-node-pool-size: 0
maximum-node-pool-size: 2
server-pod-label-name: %s
server-pod-label-value: %s
buffer-slot-size: 0
scale-loop-tick-sec: 0.5
server-cpu-resource-request: 1000
empty-node-expiration-sec: 0
resize-cooldown-sec: 0
metrics-bind-address: "0"
kwok-node-cpu: 4
kwok-node-memory: 16Gi
`, selector, safetyServerLabel, value)),
	}
	if err := kube.Create(ctx, nps); err != nil {
		t.Fatalf("create NodePoolScaler: %v", err)
	}
	t.Cleanup(func() { _ = kube.Delete(context.Background(), nps) })

	readyMessage := func() (string, int64, error) {
		var got swellv1.NodePoolScaler
		if err := kube.Get(ctx, client.ObjectKeyFromObject(nps), &got); err != nil {
			return "", 0, err
		}
		c := meta.FindStatusCondition(got.Status.Conditions, swellv1.ConditionReady)
		if c == nil {
			return "", 0, nil
		}
		return c.Message, c.ObservedGeneration, nil
	}
	waitFor(ctx, t, "the drain under way: web evicted and terminating", func() (bool, error) {
		msg, _, err := readyMessage()
		return err == nil && strings.Contains(msg, "waiting for "+ns+"/web to terminate"), err
	})
	edit := func(tick float64) int64 {
		t.Helper()
		var cur swellv1.NodePoolScaler
		if err := kube.Get(ctx, client.ObjectKeyFromObject(nps), &cur); err != nil {
			t.Fatal(err)
		}
		cur.Spec.ScaleLoopTickSec = ptr.To(tick)
		if err := kube.Update(ctx, &cur); err != nil {
			t.Fatalf("edit the spec: %v", err)
		}
		return cur.Generation
	}
	gen := edit(0.4)
	waitFor(ctx, t, "a pass of the rebuilt scaler, still waiting for web", func() (bool, error) {
		msg, observed, err := readyMessage()
		return err == nil && observed == gen && strings.Contains(msg, "waiting for "+ns+"/web to terminate"), err
	})
	releasePod()
	// The pod is gone: the drain's validation delay runs. An edit now must
	// not restart it: the rebuilt scaler reports the same re-check time.
	recheck := regexp.MustCompile(`drained; deleted after a live re-check at ([^; ]+)`)
	var at string
	waitFor(ctx, t, "the drained node waiting for its validation delay", func() (bool, error) {
		msg, _, err := readyMessage()
		if m := recheck.FindStringSubmatch(msg); m != nil {
			at = m[1]
		}
		return at != "", err
	})
	gen = edit(0.45)
	waitFor(ctx, t, "a pass of the scaler rebuilt during the validation delay", func() (bool, error) {
		msg, observed, err := readyMessage()
		if err != nil || observed != gen {
			return false, err
		}
		switch m := recheck.FindStringSubmatch(msg); {
		case m == nil:
			// Deleted before the rebuilt scaler's first pass: nothing to
			// compare (the edit took longer than the delay).
			t.Logf("the node went before the rebuilt scaler's first pass; re-check time not compared")
		case m[1] != at:
			t.Fatalf("the edit restarted the drain: re-check moved from %s to %s", at, m[1])
		default:
			t.Logf("validation delay kept across an edit: re-check at %s before and after", at)
		}
		return true, nil
	})
	waitFor(ctx, t, "the node deleted (held by the test's finalizer)", func() (bool, error) {
		n, err := env.Clientset.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		return err == nil && n.DeletionTimestamp != nil, err
	})
	// Edits while the deleted node lingers: each rebuilds the scaler, and
	// each rebuilt scaler runs a pass on its spec.
	for _, tick := range []float64{0.3, 0.45, 0.35, 0.5} {
		gen = edit(tick)
		waitFor(ctx, t, "a pass on the edited spec", func() (bool, error) {
			_, observed, err := readyMessage()
			return err == nil && observed == gen, err
		})
	}
	releaseNode()
	waitFor(ctx, t, "the node gone", func() (bool, error) {
		_, err := env.Clientset.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	evictions, deletes := safetyEvictionRequests(ctx, t)-evictionsBefore, safetyNodeDeletes(ctx, t)-deletesBefore
	t.Logf("spec edited 6 times (generation %d) during the drain and the deletion: %.0f eviction requests, %.0f node DELETE requests", gen, evictions, deletes)
	if evictions != 1 {
		t.Errorf("%.0f eviction requests, want 1", evictions)
	}
	if deletes != 1 {
		t.Errorf("%.0f node DELETE requests, want 1", deletes)
	}
	assertNPSEvents(ctx, t, ns, "edit", nodepool.ReasonDraining, nodepool.ReasonDeleting)
}

// safetyOpenWatches reads how many watches of a resource the API server is
// serving now (apiserver_longrunning_requests, a gauge).
func safetyOpenWatches(ctx context.Context, t *testing.T, resource string) float64 {
	t.Helper()
	return sumAPIServer(ctx, t, "apiserver_longrunning_requests", map[string]string{"resource": resource, "verb": "WATCH"})
}

// TestNodePoolSafetySharedCache: NodePoolScalers share the controller's one
// node and pod cache. Three new pools, each run through a pass, open at
// most one more pod watch at the API server (none when the cache already
// runs); one cache per pool would open three.
func TestNodePoolSafetySharedCache(t *testing.T) {
	kube := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	before := safetyOpenWatches(ctx, t, "pods")
	for i := range 3 {
		value := fmt.Sprintf("shared-%d", i)
		t.Cleanup(func() { deleteNodes(t, safetyLabel+"="+value) })
		nps := &swellv1.NodePoolScaler{
			ObjectMeta: metav1.ObjectMeta{Name: value, Namespace: ns},
			Spec: specFromConfigFile(t, fmt.Sprintf(`cloud-provider: kwok
node-pool-name: e2e-safety-%s
node-selector: "%s=%s"
minimum-node-pool-size: 0
maximum-node-pool-size: 1
server-pod-label-name: %s
server-pod-label-value: %s
buffer-slot-size: 0
scale-loop-tick-sec: 1
server-cpu-resource-request: 1000
metrics-bind-address: "0"
`, value, safetyLabel, value, safetyServerLabel, value)),
		}
		if err := kube.Create(ctx, nps); err != nil {
			t.Fatalf("create NodePoolScaler %s: %v", value, err)
		}
		t.Cleanup(func() { _ = kube.Delete(context.Background(), nps) })
		waitFor(ctx, t, "a pass of "+value, func() (bool, error) {
			var got swellv1.NodePoolScaler
			if err := kube.Get(ctx, client.ObjectKeyFromObject(nps), &got); err != nil {
				return false, err
			}
			return meta.IsStatusConditionTrue(got.Status.Conditions, swellv1.ConditionReady), nil
		})
	}
	after := safetyOpenWatches(ctx, t, "pods")
	t.Logf("open pod watches at the API server: %.0f before three new NodePoolScalers, %.0f after", before, after)
	if after-before > 1 {
		t.Errorf("three pools opened %.0f pod watches; the shared cache opens at most one", after-before)
	}
}
