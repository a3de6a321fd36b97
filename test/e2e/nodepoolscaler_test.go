package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/controller/nodepoolscaler"
	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// The NodePoolScaler's pool has its own node and server labels, apart from
// the shared kwok nodes and from TestNodePool's pool.
const (
	npsPoolLabel   = "swell.dev/e2e-nps-pool"
	npsPoolValue   = "crd"
	npsSelector    = npsPoolLabel + "=" + npsPoolValue
	npsServerLabel = "swell.dev/e2e-nps-server"
	npsMin         = 1
	npsMax         = 5
	npsBuffer      = 3
)

// npsConfig is a `swell nodepool` config file; the test translates it into
// the NodePoolScaler it creates.
var npsConfig = fmt.Sprintf(`cloud-provider: kwok
node-pool-name: e2e-nps
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
`, npsSelector, npsMin, npsMax, npsServerLabel, npsPoolValue, npsBuffer)

// TestNodePoolScalerBuffersBurstsAndShrinks runs the in-cluster kind on
// the real control plane, scheduler and kwok, from a `swell nodepool`
// config file translated into a spec: server pods arrive in bursts and the
// buffer is restored through new kwok nodes; they leave and surplus nodes
// are cordoned, then deleted once empty past the expiry. Status follows
// the cluster; every action is an event on the object; no node with a
// server pod is deleted and the pool stays within [min, max].
func TestNodePoolScalerBuffersBurstsAndShrinks(t *testing.T) {
	kube := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	t.Cleanup(func() { deleteNodes(t, npsSelector) })

	spec := specFromConfigFile(t, npsConfig)
	mon := watchNodes(ctx, t, npsSelector, npsServerLabel, npsMin, npsMax)
	nps := &swellv1.NodePoolScaler{ObjectMeta: metav1.ObjectMeta{Name: "burst", Namespace: ns}, Spec: spec}
	if err := kube.Create(ctx, nps); err != nil {
		t.Fatalf("create NodePoolScaler: %v", err)
	}
	t.Cleanup(func() { _ = kube.Delete(context.Background(), nps) })

	waitNPSBuffer(ctx, t, kube, ns, "the initial buffer", 0)

	createNPSServers(ctx, t, ns, 0, 6)
	waitNPSBuffer(ctx, t, kube, ns, "the buffer after a burst of 6", 6)

	createNPSServers(ctx, t, ns, 6, 8)
	waitNPSBuffer(ctx, t, kube, ns, "the buffer after a burst of 8 more", 14)

	for i := range 12 {
		deleteNPSServer(ctx, t, ns, i)
	}
	waitFor(ctx, t, "surplus cordoned, empty nodes deleted, and status showing 2 nodes", func() (bool, error) {
		st, err := npsPoolState(ctx, ns)
		if err != nil || st.emptySwellCordoned != 0 || st.free < npsBuffer || st.nodes != 2 {
			return false, err
		}
		s, err := npsStatus(ctx, kube, ns)
		return err == nil && s.PoolSize == 2 && s.SlotsUsed == 2, err
	})
	for i := 12; i < 14; i++ {
		if p, err := env.Clientset.CoreV1().Pods(ns).Get(ctx, npsServerName(i), metav1.GetOptions{}); err != nil || p.Status.Phase != corev1.PodRunning {
			t.Fatalf("server %s should still run: %v", npsServerName(i), err)
		}
	}

	for i := 12; i < 14; i++ {
		deleteNPSServer(ctx, t, ns, i)
	}
	waitFor(ctx, t, "the pool back at its minimum, in the cluster and in status", func() (bool, error) {
		st, err := npsPoolState(ctx, ns)
		if err != nil || st.nodes != npsMin || st.free < npsBuffer {
			return false, err
		}
		s, err := npsStatus(ctx, kube, ns)
		return err == nil && s.PoolSize == npsMin && s.SlotsUsed == 0 && s.NodesReady == npsMin && s.NodesCordoned == 0 && s.SlotsFree >= npsBuffer, err
	})

	s, err := npsStatus(ctx, kube, ns)
	if err != nil {
		t.Fatal(err)
	}
	if s.LastAction == "" || s.LastActionTime == nil {
		t.Errorf("status.lastAction not set: %+v", s)
	}
	if !meta.IsStatusConditionTrue(s.Conditions, swellv1.ConditionProviderHealthy) {
		t.Errorf("ProviderHealthy not True: %+v", s.Conditions)
	}
	assertNPSEvents(ctx, t, ns, "burst", nodepool.ReasonResized, nodepool.ReasonCordoned, nodepool.ReasonDeleting)

	r := mon.stop()
	t.Logf("pool sizes seen: min %d max %d; nodes deleted: %d; last action: %s", r.minSeen, r.maxSeen, r.deleted, s.LastAction)
	for _, v := range r.violations {
		t.Error(v)
	}
	if r.maxSeen > npsMax || r.minSeen < npsMin {
		t.Errorf("pool size left [%d, %d]: saw %d..%d", npsMin, npsMax, r.minSeen, r.maxSeen)
	}
	if r.deleted == 0 {
		t.Error("no node was deleted")
	}
}

// TestNodePoolScalerRejectsInvalidSpecs shows the CRD's CEL rules at the
// real apiserver: each bad spec is refused with the field named.
func TestNodePoolScalerRejectsInvalidSpecs(t *testing.T) {
	kube := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	valid := func() swellv1.NodePoolScalerSpec {
		return swellv1.NodePoolScalerSpec{
			CloudProvider: swellv1.ProviderKwok, NodeSelector: "swell.dev/e2e-invalid=x",
			ServerPodLabelName: "app", ServerCPUResourceRequest: ptr.To(intstr.FromInt32(1000)),
		}
	}
	for i, tc := range []struct {
		name   string
		mutate func(*swellv1.NodePoolScalerSpec)
		want   string
	}{
		{"min above max", func(s *swellv1.NodePoolScalerSpec) {
			s.MinimumNodePoolSize, s.MaximumNodePoolSize = ptr.To[int32](4), ptr.To[int32](3)
		}, "spec.maximumNodePoolSize must be greater than or equal to spec.minimumNodePoolSize"},
		{"negative buffer", func(s *swellv1.NodePoolScalerSpec) { s.BufferSlotSize = ptr.To(intstr.FromInt32(-1)) }, "spec.bufferSlotSize"},
		{"buffer over 100%", func(s *swellv1.NodePoolScalerSpec) { s.BufferSlotSize = ptr.To(intstr.FromString("150%")) }, "spec.bufferSlotSize"},
		{"percent over 100", func(s *swellv1.NodePoolScalerSpec) { s.BufferSlotPercent = ptr.To(101.0) }, "spec.bufferSlotPercent must be from 0 to 100"},
		{"digitalocean without token", func(s *swellv1.NodePoolScalerSpec) {
			s.CloudProvider, s.ClusterName, s.NodePoolName = swellv1.ProviderDigitalOcean, "c", "p"
		}, "spec.cloudProviderTokenSecretRef is required for cloudProvider digitalocean"},
		{"kwok selector not key=value", func(s *swellv1.NodePoolScalerSpec) { s.NodeSelector = "pool in (a,b)" }, "spec.nodeSelector must be key=value"},
		{"no slot", func(s *swellv1.NodePoolScalerSpec) { s.ServerCPUResourceRequest = nil }, "spec.serverCpuResourceRequest is required"},
		{"zero tick", func(s *swellv1.NodePoolScalerSpec) { s.ScaleLoopTickSec = ptr.To(0.0) }, "spec.scaleLoopTickSec must be > 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := valid()
			tc.mutate(&spec)
			obj := &swellv1.NodePoolScaler{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bad-%d", i), Namespace: ns}, Spec: spec}
			err := kube.Create(ctx, obj)
			if err == nil {
				_ = kube.Delete(ctx, obj)
				t.Fatalf("accepted; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestNodePoolScalerReportsWhatTheAPICannotCheck shows the conditions for
// specs that pass CEL but cannot run: a label key only the decoder rejects
// (InvalidSpec) and a token Secret that does not exist (SecretUnavailable).
func TestNodePoolScalerReportsWhatTheAPICannotCheck(t *testing.T) {
	kube := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	badLabel := swellv1.NodePoolScalerSpec{
		CloudProvider: swellv1.ProviderKwok, NodeSelector: "swell.dev/e2e-badlabel=x",
		ServerPodLabelName: "not a label!", ServerCPUResourceRequest: ptr.To(intstr.FromInt32(1000)),
	}
	noSecret := swellv1.NodePoolScalerSpec{
		CloudProvider: swellv1.ProviderDigitalOcean, ClusterName: "c", NodePoolName: "p",
		CloudProviderTokenSecretRef: &swellv1.SecretKeyRef{Name: "missing"},
		NodeSelector:                "swell.dev/e2e-nosecret=x", ServerPodLabelName: "app",
		ServerCPUResourceRequest: ptr.To(intstr.FromInt32(1000)),
	}
	for name, tc := range map[string]struct {
		spec   swellv1.NodePoolScalerSpec
		reason string
		field  string
	}{
		"bad-label": {badLabel, nodepoolscaler.ReasonInvalidSpec, nodepool.KeyPodLabelName},
		"no-secret": {noSecret, nodepoolscaler.ReasonSecretUnavailable, "spec.cloudProviderTokenSecretRef"},
	} {
		obj := &swellv1.NodePoolScaler{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: tc.spec}
		if err := kube.Create(ctx, obj); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		waitFor(ctx, t, name+": Ready=False "+tc.reason, func() (bool, error) {
			var got swellv1.NodePoolScaler
			if err := kube.Get(ctx, client.ObjectKeyFromObject(obj), &got); err != nil {
				return false, err
			}
			c := meta.FindStatusCondition(got.Status.Conditions, swellv1.ConditionReady)
			if c == nil || c.Status != metav1.ConditionFalse || c.Reason != tc.reason {
				return false, fmt.Errorf("Ready condition %+v", c)
			}
			if !strings.Contains(c.Message, tc.field) {
				return false, fmt.Errorf("message %q does not name %s", c.Message, tc.field)
			}
			return true, nil
		})
	}
}

// specFromConfigFile writes the config, checks that `swell nodepool`
// loads it, and translates it into a NodePoolScaler spec.
func specFromConfigFile(t *testing.T, text string) swellv1.NodePoolScalerSpec {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := nodepool.Load(path, func(string) string { return "" }); err != nil {
		t.Fatalf("swell nodepool rejects the config: %v", err)
	}
	keys, err := nodepool.ReadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := nodepoolscaler.SpecFromKeys(keys, nodepoolscaler.TokenMount{})
	if err != nil {
		t.Fatalf("translate the config: %v", err)
	}
	return spec
}

func npsStatus(ctx context.Context, kube client.Client, ns string) (swellv1.NodePoolScalerStatus, error) {
	var nps swellv1.NodePoolScaler
	if err := kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: "burst"}, &nps); err != nil {
		return swellv1.NodePoolScalerStatus{}, err
	}
	return nps.Status, nil
}

// waitNPSBuffer waits until the servers run, the cluster holds the buffer,
// and the status (Ready, for the current generation) agrees with it.
func waitNPSBuffer(ctx context.Context, t *testing.T, kube client.Client, ns, what string, running int) {
	t.Helper()
	waitFor(ctx, t, what, func() (bool, error) {
		st, err := npsPoolState(ctx, ns)
		if err != nil || st.running != running || st.free < npsBuffer {
			return false, err
		}
		s, err := npsStatus(ctx, kube, ns)
		if err != nil {
			return false, err
		}
		return meta.IsStatusConditionTrue(s.Conditions, swellv1.ConditionReady) && s.ObservedGeneration > 0 &&
			s.SlotsUsed == int64(running) && s.SlotsFree >= npsBuffer && int(s.PoolSize) == st.nodes, nil
	})
}

// npsPoolState reads the pool from the API server, independently of Swell.
func npsPoolState(ctx context.Context, ns string) (pool, error) {
	return readPool(ctx, ns, npsSelector, npsServerLabel)
}

func npsServerName(i int) string { return fmt.Sprintf("nps-gs-%02d", i) }

// createNPSServers creates a burst of one-CPU server pods for the pool.
func createNPSServers(ctx context.Context, t *testing.T, ns string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		createPod(ctx, t, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: npsServerName(i), Namespace: ns, Labels: map[string]string{npsServerLabel: npsPoolValue}},
			Spec: corev1.PodSpec{
				NodeSelector:                  map[string]string{npsPoolLabel: npsPoolValue},
				TerminationGracePeriodSeconds: ptr.To[int64](0),
				Containers: []corev1.Container{{Name: "server", Image: "registry.invalid/game-server:1", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("256Mi")},
				}}},
			},
		})
	}
}

func deleteNPSServer(ctx context.Context, t *testing.T, ns string, i int) {
	t.Helper()
	if err := env.Clientset.CoreV1().Pods(ns).Delete(ctx, npsServerName(i), metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatalf("delete server %s: %v", npsServerName(i), err)
	}
}

// assertNPSEvents checks that the object's events include each reason:
// the actions the scaler took on nodes are reported on the object too.
func assertNPSEvents(ctx context.Context, t *testing.T, ns, name string, reasons ...string) {
	t.Helper()
	waitFor(ctx, t, "events on the NodePoolScaler for "+strings.Join(reasons, ", "), func() (bool, error) {
		evs, err := env.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String(),
		})
		if err != nil {
			return false, err
		}
		seen := map[string]bool{}
		for _, e := range evs.Items {
			seen[e.Reason] = true
		}
		for _, r := range reasons {
			if !seen[r] {
				return false, fmt.Errorf("no %s event yet (seen %v)", r, seen)
			}
		}
		return true, nil
	})
}

// nodeWatch checks every deletion of a pool node as it happens (no server
// pod bound, Swell's annotation present) and records the live pool size
// once it first reached the minimum.
type nodeWatch struct {
	serverLabel string
	min         int
	mu          sync.Mutex
	reachedMin  bool
	result      monitorResult
	cancel      context.CancelFunc
	done        chan struct{}
}

func watchNodes(ctx context.Context, t *testing.T, selector, serverLabel string, minSize, maxSize int) *nodeWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	m := &nodeWatch{serverLabel: serverLabel, min: minSize, result: monitorResult{minSeen: maxSize + 1}, cancel: cancel, done: make(chan struct{})}
	w, err := env.Clientset.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{LabelSelector: selector})
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

func (m *nodeWatch) checkDeleted(ctx context.Context, n *corev1.Node) {
	pods, err := env.Clientset.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		LabelSelector: m.serverLabel,
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", n.Name).String(),
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	m.result.deleted++
	if err != nil {
		m.result.violations = append(m.result.violations, fmt.Sprintf("check deleted node %s: %v", n.Name, err))
		return
	}
	for _, p := range pods.Items {
		m.result.violations = append(m.result.violations, fmt.Sprintf("node %s was deleted with server pod %s on it", n.Name, p.Name))
	}
	if _, ok := n.Annotations[nodepool.CordonedAtAnnotation]; !ok {
		m.result.violations = append(m.result.violations, fmt.Sprintf("node %s was deleted without Swell's cordon annotation", n.Name))
	}
}

func (m *nodeWatch) size(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n >= m.min {
		m.reachedMin = true
	}
	if m.reachedMin {
		m.result.minSeen, m.result.maxSeen = min(m.result.minSeen, n), max(m.result.maxSeen, n)
	}
}

func (m *nodeWatch) stop() monitorResult {
	m.cancel()
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.result
}

// deleteNodes removes whatever a test's pool left behind.
func deleteNodes(t *testing.T, selector string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := env.Clientset.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: selector}); err != nil {
		t.Logf("clean up pool nodes: %v", err)
	}
}
