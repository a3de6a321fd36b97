package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/swell-autoscaler/swell/pkg/nodepool/capacitybuffer"
	"github.com/swell-autoscaler/swell/pkg/policy"
)

var capacityBufferGVR = schema.GroupVersionResource{Group: capacitybuffer.Group, Version: capacitybuffer.Version, Resource: "capacitybuffers"}

const cbServerLabel = "swell.dev/e2e-cb-server"

// TestNodePoolCapacityBuffer publishes a buffer of max(2 slots, 50% of the
// servers) as a CapacityBuffer, against SIG Autoscaling's own CRD
// (cluster-autoscaler 1.36.1) in the test API server, and shows the object
// written, then kept in step as servers arrive and leave: every replicas
// value a watch sees is one the buffer rule gives for some server count,
// passes with nothing changed write nothing, and an outside edit is
// repaired at the next resync.
func TestNodePoolCapacityBuffer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := env.InstallCRDs(ctx, "testdata/capacitybuffer"); err != nil {
		t.Fatalf("install the CapacityBuffer CRD: %v", err)
	}
	ns := newNamespace(ctx, t)
	dyn, err := dynamic.NewForConfig(env.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	seen := watchBufferReplicas(ctx, t, dyn, ns)

	b := policy.Buffer{Absolute: 2, Percent: 50}
	// The publisher runs as a user holding only config/rbac/capacitybuffer's
	// role, so the role is shown sufficient.
	cbClient, published := capacityBufferClient(ctx, t)
	syncer, err := capacitybuffer.NewSyncer(capacitybuffer.SyncerConfig{
		Client: cbClient,
		Spec: capacitybuffer.Spec{Namespace: ns, Name: "game-servers", Slot: policy.Resources{"cpu": 1000, "memory": 256 << 20},
			NodeSelector: map[string]string{"swell.dev/pool": "servers"}},
		Buffer:     b,
		ServerPods: labels.SelectorFromSet(labels.Set{cbServerLabel: ns}),
		Resync:     2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- syncer.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("syncer: %v", err)
		}
	}()

	waitBufferReplicas(ctx, t, dyn, ns, 2, "the buffer published with no server: 2")
	pt := slotTemplate(ctx, t, ns)
	req := pt.Template.Spec.Containers[0].Resources.Requests
	if cpu, mem := req[corev1.ResourceCPU], req[corev1.ResourceMemory]; cpu.Cmp(resource.MustParse("1")) != 0 || mem.Cmp(resource.MustParse("256Mi")) != 0 {
		t.Errorf("slot template requests %v, want cpu 1 and memory 256Mi", req)
	}
	t.Logf("published: CapacityBuffer %s/game-servers (%s/%s) → PodTemplate %s, requests cpu %s memory %s, nodeSelector %v",
		ns, capacitybuffer.Group, capacitybuffer.Version, pt.Name, ptr.To(req[corev1.ResourceCPU]).String(), ptr.To(req[corev1.ResourceMemory]).String(), pt.Template.Spec.NodeSelector)

	createPendingServers(ctx, t, ns, 0, 6)
	waitBufferReplicas(ctx, t, dyn, ns, 3, "6 servers: 50% is 3")
	createPendingServers(ctx, t, ns, 6, 4)
	waitBufferReplicas(ctx, t, dyn, ns, 5, "10 servers: 50% is 5")

	// Nothing changed: passes read the cache and write nothing. Counted
	// at the publisher's own client (the API server's counters are
	// cluster-wide: a namespace being cleaned up elsewhere writes too) and
	// printed from the API server's metrics beside it. The last publish is
	// counted in those metrics when its handler returns, which can be just
	// after the watch showed the object, so they are read once they have
	// stopped moving.
	before, beforeT := settledWrites(ctx, t)
	sent := published.writes.Load()
	for range 5 {
		if err := syncer.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	after, afterT := resourceRequests(ctx, t, "capacitybuffers"), resourceRequests(ctx, t, "podtemplates")
	if w := published.writes.Load() - sent; w != 0 {
		t.Errorf("5 passes with nothing changed sent %d writes", w)
	}
	t.Logf("5 passes with nothing changed: the publisher sent %d writes; the API server counted %v writes to capacitybuffers or podtemplates from all clients",
		published.writes.Load()-sent, writes(after)-writes(before)+writes(afterT)-writes(beforeT))

	for i := range 8 {
		if err := env.Clientset.CoreV1().Pods(ns).Delete(ctx, capiServerName(i), metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
	}
	waitBufferReplicas(ctx, t, dyn, ns, 2, "2 servers left: back to the absolute 2")

	// An outside edit is put back at the next resync.
	patch := []byte(`{"spec":{"replicas":40}}`)
	if _, err := dyn.Resource(capacityBufferGVR).Namespace(ns).Patch(ctx, "game-servers", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitBufferReplicas(ctx, t, dyn, ns, 2, "the outside edit to 40 repaired to 2")

	values := seen.stop()
	t.Logf("replicas seen by a watch on the CapacityBuffer: %v", values)
	allowed := map[int64]bool{}
	for n := range int64(11) {
		allowed[b.Wanted(n)] = true
	}
	for _, v := range values {
		if !allowed[v] && v != 40 {
			t.Errorf("the CapacityBuffer held %d replicas, which the buffer rule gives for no count of 0..10 servers", v)
		}
	}
	for _, want := range []int64{2, 3, 5, 40} {
		if !slices.Contains(values, want) {
			t.Errorf("the watch never saw %d replicas: %v", want, values)
		}
	}
}

// capacityBufferClient is a clientset impersonating a user bound
// cluster-wide to the shipped swell-nodepool-capacitybuffer ClusterRole,
// and the count of the writes it sends.
func capacityBufferClient(ctx context.Context, t *testing.T) (kubernetes.Interface, *clientWrites) {
	t.Helper()
	cfg := rest.CopyConfig(env.RESTConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: grantCapacityBufferRole(ctx, t), Groups: []string{"system:authenticated"}}
	counter := &clientWrites{}
	cfg.Wrap(counter.wrap)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, counter
}

// clientWrites counts the requests other than GET that a client sends.
type clientWrites struct{ writes atomic.Int64 }

func (c *clientWrites) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Method != http.MethodGet {
			c.writes.Add(1)
		}
		return next.RoundTrip(r)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// grantCapacityBufferRole binds config/rbac/capacitybuffer's ClusterRole
// to a test user, cluster-wide, and returns the user's name.
func grantCapacityBufferRole(ctx context.Context, t *testing.T) string {
	t.Helper()
	role := &rbacv1.ClusterRole{}
	readYAML(t, "../../config/rbac/capacitybuffer/role.yaml", role)
	role.Name = "e2e-" + role.Name
	const user = "e2e-capacitybuffer-publisher"
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	for _, create := range []func() error{
		func() error {
			_, err := env.Clientset.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := env.Clientset.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{})
			return err
		},
	} {
		if err := create(); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("grant the capacity-buffer role: %v", err)
		}
	}
	t.Cleanup(func() {
		_ = env.Clientset.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
		_ = env.Clientset.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
	})
	return user
}

// kubeconfigAs writes a copy of the environment's kubeconfig
// that acts as user, so a swell process holds only that user's rights.
func kubeconfigAs(t *testing.T, user string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		a.Impersonate, a.ImpersonateGroups = user, []string{"system:authenticated"}
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// settledWrites reads the API server's request counts on capacitybuffers
// and podtemplates until two reads 300 ms apart agree on their writes.
func settledWrites(ctx context.Context, t *testing.T) (buffers, templates map[string]float64) {
	t.Helper()
	buffers, templates = resourceRequests(ctx, t, "capacitybuffers"), resourceRequests(ctx, t, "podtemplates")
	for ctx.Err() == nil {
		time.Sleep(300 * time.Millisecond)
		b, p := resourceRequests(ctx, t, "capacitybuffers"), resourceRequests(ctx, t, "podtemplates")
		if writes(b) == writes(buffers) && writes(p) == writes(templates) {
			return b, p
		}
		buffers, templates = b, p
	}
	t.Fatal(ctx.Err())
	return nil, nil
}

func writes(m map[string]float64) float64 {
	return m["POST "] + m["PUT "] + m["PATCH "] + m["DELETE "]
}

// createPendingServers creates server pods that select a node label no
// node has: they stay Pending, and pending servers hold slots.
func createPendingServers(ctx context.Context, t *testing.T, ns string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		createPod(ctx, t, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: capiServerName(i), Namespace: ns, Labels: map[string]string{cbServerLabel: ns}},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"swell.dev/pool": "servers"},
				Containers:   []corev1.Container{{Name: "server", Image: "registry.invalid/game-server:1"}},
			},
		})
	}
}

func waitBufferReplicas(ctx context.Context, t *testing.T, dyn dynamic.Interface, ns string, want int64, what string) {
	t.Helper()
	waitFor(ctx, t, what, func() (bool, error) {
		cb, err := dyn.Resource(capacityBufferGVR).Namespace(ns).Get(ctx, "game-servers", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got, _, _ := unstructured.NestedInt64(cb.Object, "spec", "replicas")
		if got != want {
			return false, fmt.Errorf("spec.replicas %d", got)
		}
		return true, nil
	})
}

// replicaWatch records every spec.replicas a watch on the namespace's
// CapacityBuffers delivers, in order, without repeats.
type replicaWatch struct {
	mu     sync.Mutex
	values []int64
	cancel context.CancelFunc
	done   chan struct{}
}

func watchBufferReplicas(ctx context.Context, t *testing.T, dyn dynamic.Interface, ns string) *replicaWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	w, err := dyn.Resource(capacityBufferGVR).Namespace(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		t.Fatalf("watch CapacityBuffers: %v", err)
	}
	rw := &replicaWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rw.done)
		defer w.Stop()
		for ev := range w.ResultChan() {
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			v, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
			rw.mu.Lock()
			if n := len(rw.values); n == 0 || rw.values[n-1] != v {
				rw.values = append(rw.values, v)
			}
			rw.mu.Unlock()
		}
	}()
	return rw
}

func (rw *replicaWatch) stop() []int64 {
	rw.cancel()
	<-rw.done
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return slices.Clone(rw.values)
}

// TestNodePoolCapacityBufferCommand runs `swell nodepool` with
// cloud-provider none, as on a cluster whose nodes Karpenter or the
// Cluster Autoscaler own: it publishes the CapacityBuffer from the pool's
// own keys and follows the server pods. The process runs as a user holding
// only config/rbac/capacitybuffer's role, which grants nothing on nodes,
// so it cannot cordon or delete one.
func TestNodePoolCapacityBufferCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns, dyn, p := startBufferNodepool(ctx, t, "capacitybuffer-nodepool", func(ns, kubeconfig string) string {
		return fmt.Sprintf(`cloud-provider: none
capacity-buffer: %s/game-servers
node-selector: "swell.dev/pool=servers"
cluster-kube-config-path: %s
server-pod-label-name: %s
server-pod-label-value: %s
buffer-slot-size: 1
buffer-slot-percent: 100
server-cpu-resource-request: 500
server-memory-resource-request: 1Gi
metrics-bind-address: "0"
`, ns, kubeconfig, cbServerLabel, ns)
	})
	defer stopSwell(t, p)

	waitBufferReplicas(ctx, t, dyn, ns, 1, "the buffer published by swell nodepool with no server: 1")
	createPendingServers(ctx, t, ns, 0, 3)
	waitBufferReplicas(ctx, t, dyn, ns, 3, "3 servers: 100% is 3")
	pt := slotTemplate(ctx, t, ns)
	req := pt.Template.Spec.Containers[0].Resources.Requests
	if cpu, mem := req[corev1.ResourceCPU], req[corev1.ResourceMemory]; cpu.Cmp(resource.MustParse("500m")) != 0 || mem.Cmp(resource.MustParse("1Gi")) != 0 {
		t.Errorf("slot template requests %v, want cpu 500m and memory 1Gi", req)
	}
	t.Logf("swell nodepool (cloud-provider none, RBAC of config/rbac/capacitybuffer only) published 3 replicas of %s: cpu %s memory %s",
		pt.Name, ptr.To(req[corev1.ResourceCPU]).String(), ptr.To(req[corev1.ResourceMemory]).String())
}

// TestNodePoolCommandReadsKubescalerFlagsAndKeys runs the swell nodepool
// binary as a kubescaler user would: keys in the config file spelt in mixed
// case, and kubescaler's --<key> command-line flags (mixed case too)
// overriding the file. The published buffer shows which values the running
// pool acts on: the flag's 4 slots with no server, then the file's 100 % of
// 6 servers.
func TestNodePoolCommandReadsKubescalerFlagsAndKeys(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns, dyn, p := startBufferNodepool(ctx, t, "kubescaler-flags-nodepool", func(ns, kubeconfig string) string {
		return fmt.Sprintf(`Cloud-Provider: none
CAPACITY-BUFFER: %s/game-servers
Node-Selector: "swell.dev/pool=servers"
cluster-kube-config-path: %s
Server-Pod-Label-Name: %s
server-pod-label-VALUE: %s
Buffer-Slot-Size: 1
Buffer-Slot-Percent: 100
metrics-bind-address: "0"
`, ns, kubeconfig, cbServerLabel, ns)
	}, "--Buffer-Slot-Size=4", "--server-cpu-resource-request", "250")
	defer stopSwell(t, p)

	waitBufferReplicas(ctx, t, dyn, ns, 4, "no server: the --Buffer-Slot-Size flag's 4 slots, not the file's 1")
	createPendingServers(ctx, t, ns, 0, 6)
	waitBufferReplicas(ctx, t, dyn, ns, 6, "6 servers: the file's Buffer-Slot-Percent 100 gives 6 > 4")
	if cpu := slotTemplate(ctx, t, ns).Template.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU]; cpu.Cmp(resource.MustParse("250m")) != 0 {
		t.Errorf("slot template cpu %s, want the --server-cpu-resource-request flag's 250m", cpu.String())
	}
	t.Logf("mixed-case file keys and kubescaler flags: buffer 4 with no server (flag), 6 with 6 servers (file's percent), slot cpu 250m (flag)")
}

// startBufferNodepool starts the swell nodepool binary with cloud-provider
// none, publishing a CapacityBuffer into a new namespace as a user holding
// only config/rbac/capacitybuffer. config returns the file's text for the
// namespace and that user's kubeconfig.
func startBufferNodepool(ctx context.Context, t *testing.T, name string, config func(ns, kubeconfig string) string, args ...string) (string, dynamic.Interface, *swellProcess) {
	t.Helper()
	if err := env.InstallCRDs(ctx, "testdata/capacitybuffer"); err != nil {
		t.Fatalf("install the CapacityBuffer CRD: %v", err)
	}
	ns := newNamespace(ctx, t)
	dyn, err := dynamic.NewForConfig(env.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	bin := buildSwell(t)
	path := filepath.Join(t.TempDir(), "nodepool.yaml")
	writeFile(t, path, config(ns, kubeconfigAs(t, grantCapacityBufferRole(ctx, t))))
	return ns, dyn, startSwell(t, bin, name, append([]string{"nodepool", "--config", path}, args...)...)
}

// slotTemplate reads the slot-shaped PodTemplate published beside the
// game-servers CapacityBuffer in ns.
func slotTemplate(ctx context.Context, t *testing.T, ns string) *corev1.PodTemplate {
	t.Helper()
	pt, err := env.Clientset.CoreV1().PodTemplates(ns).Get(ctx, "game-servers-slot", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("slot PodTemplate: %v", err)
	}
	return pt
}
