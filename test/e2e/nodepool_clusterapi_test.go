package e2e

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/nodepool"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/clusterapi"
)

// The Cluster API pool: its own node label and server label, apart from
// the kwok suite's pool.
const (
	capiPoolLabel   = "swell.dev/e2e-capi-pool"
	capiPoolValue   = "md"
	capiServerLabel = "swell.dev/e2e-capi-server"
	capiCluster     = "e2e"
	capiMD          = "game-pool"
	capiBuffer      = 3
	capiMin         = 1
	capiMax         = 5
)

var (
	mdGVR      = schema.GroupVersionResource{Group: clusterapi.Group, Version: "v1beta2", Resource: "machinedeployments"}
	machineGVR = schema.GroupVersionResource{Group: clusterapi.Group, Version: "v1beta2", Resource: "machines"}
)

// TestNodePoolClusterAPI runs the node-pool scaler with the clusterapi
// provider against the real Cluster API CRDs (v1.14.2, installed from
// testdata/clusterapi) in the test API server. The test stands in for the
// MachineSet controller and the infrastructure provider: it keeps as many
// Machines as the MachineDeployment's spec.replicas, creates a kwok Node
// for each new Machine (setting status.nodeRef), and on a scale-down
// removes Machines marked cluster.x-k8s.io/delete-machine first, as the
// MachineSet controller does, then their Nodes. It shows a burst of
// servers growing the MachineDeployment through its scale subresource and
// every removed Machine being one Swell marked: a Swell-cordoned node with
// no server left on it.
func TestNodePoolClusterAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := env.InstallCRDs(ctx, "testdata/clusterapi"); err != nil {
		t.Fatalf("install Cluster API CRDs: %v", err)
	}
	ns := newNamespace(ctx, t)
	dyn, err := dynamic.NewForConfig(env.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteCAPINodes(t) })
	createMachineDeployment(ctx, t, dyn, ns, 1)
	before := resourceRequests(ctx, t, "machinedeployments")

	sim := &capiStandIn{dyn: dyn, ns: ns}
	simCtx, stopSim := context.WithCancel(ctx)
	simDone := make(chan struct{})
	go func() { defer close(simDone); sim.run(simCtx) }()
	defer func() { stopSim(); <-simDone }()
	waitFor(ctx, t, "the MachineDeployment's first Machine and Node", func() (bool, error) {
		st, err := capiPool(ctx, ns)
		return err == nil && st.readyNodes == 1, err
	})

	keys := map[string]string{
		nodepool.KeyCloudProvider: nodepool.ProviderClusterAPI, nodepool.KeyNodePoolName: ns + "/" + capiMD,
		nodepool.KeyClusterName: capiCluster, nodepool.KeyNodeSelector: capiPoolLabel + "=" + capiPoolValue,
		nodepool.KeyMinNodes: strconv.Itoa(capiMin), nodepool.KeyMaxNodes: strconv.Itoa(capiMax),
		nodepool.KeyPodLabelName: capiServerLabel, nodepool.KeyPodLabelValue: capiPoolValue,
		nodepool.KeyBufferSlotSize: strconv.Itoa(capiBuffer), nodepool.KeyScaleLoopTick: "0.5",
		nodepool.KeyServerCPURequest: "1000", nodepool.KeyEmptyNodeExpiration: "2", nodepool.KeyResizeCooldown: "1",
		nodepool.KeyMetricsBindAddress: "0",
	}
	cfg, err := nodepool.FromKeys(keys)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	// The provider runs as a user holding only config/rbac/clusterapi's
	// role (bound in the test namespace), so the role is shown sufficient.
	prov, err := nodepool.NewProvider(ctx, cfg, clusterAPIProviderClient(ctx, t, ns))
	if err != nil {
		t.Fatalf("clusterapi provider: %v", err)
	}
	t.Logf("provider %T for MachineDeployment %s/%s", prov, ns, capiMD)
	scaler, err := nodepool.New(nodepool.Options{Config: cfg, Client: env.Clientset, Provider: prov})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- scaler.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("scaler: %v", err)
		}
	}()

	// A burst of 6 one-CPU servers on 4-CPU nodes: 6 + a buffer of 3 needs
	// 9 slots, so the MachineDeployment must grow from 1 to 3.
	createCAPIServers(ctx, t, ns, 6)
	waitFor(ctx, t, "6 servers running and a buffer of 3 free slots", func() (bool, error) {
		st, err := capiPool(ctx, ns)
		return err == nil && st.running == 6 && st.free >= capiBuffer, err
	})
	grown := mdReplicas(ctx, t, dyn, ns)
	if grown < 3 {
		t.Fatalf("MachineDeployment spec.replicas %d after the burst, want >= 3", grown)
	}
	t.Logf("after the burst of 6: MachineDeployment spec.replicas %d", grown)

	// All servers leave: surplus nodes are cordoned, expire empty, and
	// Swell marks their Machines and lowers replicas; the stand-in
	// MachineSet controller removes the marked Machines.
	for i := range 6 {
		if err := env.Clientset.CoreV1().Pods(ns).Delete(ctx, capiServerName(i), metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(ctx, t, "the pool back at its minimum of 1 node", func() (bool, error) {
		st, err := capiPool(ctx, ns)
		return err == nil && st.nodes == capiMin && st.readyNodes == capiMin && st.free >= capiBuffer, err
	})
	if r := mdReplicas(ctx, t, dyn, ns); r != capiMin {
		t.Errorf("MachineDeployment spec.replicas %d at the end, want %d", r, capiMin)
	}
	left, err := dyn.Resource(machineGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range left.Items {
		if _, ok := m.GetAnnotations()[clusterapi.DeleteMachineAnnotation]; ok {
			t.Errorf("Machine %s still carries %s: a later scale-down would remove it unasked", m.GetName(), clusterapi.DeleteMachineAnnotation)
		}
	}

	after := resourceRequests(ctx, t, "machinedeployments")
	removed, violations := sim.result()
	t.Logf("Machines removed on scale-down: %d (%s)", len(removed), strings.Join(removed, ", "))
	t.Logf("apiserver requests on machinedeployments during the test: scale GET %v PUT %v, MachineDeployment PUT/PATCH %v",
		after["GET scale"]-before["GET scale"], after["PUT scale"]-before["PUT scale"], after["PUT "]+after["PATCH "]-before["PUT "]-before["PATCH "])
	for _, v := range violations {
		t.Error(v)
	}
	if len(removed) != grown-capiMin {
		t.Errorf("%d Machines removed, want %d (from %d replicas down to %d)", len(removed), grown-capiMin, grown, capiMin)
	}
	if after["PUT scale"]-before["PUT scale"] < 2 {
		t.Errorf("scale subresource PUTs %v, want at least one to grow and one to shrink", after["PUT scale"]-before["PUT scale"])
	}
	if n := after["PUT "] + after["PATCH "] - before["PUT "] - before["PATCH "]; n != 0 {
		t.Errorf("%v writes to the MachineDeployment object itself; Swell must only write its scale subresource", n)
	}
}

// clusterAPIProviderClient is a clientset impersonating a user bound, in
// ns only, to the shipped swell-controller-clusterapi ClusterRole.
func clusterAPIProviderClient(ctx context.Context, t *testing.T, ns string) kubernetes.Interface {
	t.Helper()
	role := &rbacv1.ClusterRole{}
	readYAML(t, "../../config/rbac/clusterapi/role.yaml", role)
	role.Name = "e2e-" + role.Name
	if _, err := env.Clientset.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create ClusterRole: %v", err)
	}
	t.Cleanup(func() {
		_ = env.Clientset.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
	})
	const user = "e2e-clusterapi-provider"
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "clusterapi-provider", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	if _, err := env.Clientset.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create RoleBinding: %v", err)
	}
	cfg := rest.CopyConfig(env.RESTConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// createMachineDeployment creates the pool's MachineDeployment, with the
// Cluster Autoscaler's capacity annotations (4 CPU, 16Gi per machine).
func createMachineDeployment(ctx context.Context, t *testing.T, dyn dynamic.Interface, ns string, replicas int64) {
	t.Helper()
	md := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": clusterapi.Group + "/v1beta2", "kind": "MachineDeployment",
		"metadata": map[string]any{"name": capiMD, "namespace": ns, "annotations": map[string]any{
			clusterapi.CapacityCPU: "4", clusterapi.CapacityMemory: "16Gi",
		}},
		"spec": map[string]any{
			"clusterName": capiCluster,
			"replicas":    replicas,
			"selector":    map[string]any{"matchLabels": map[string]any{clusterapi.DeploymentNameLabel: capiMD}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{clusterapi.DeploymentNameLabel: capiMD}},
				"spec":     machineSpec(),
			},
		},
	}}
	if _, err := dyn.Resource(mdGVR).Namespace(ns).Create(ctx, md, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create MachineDeployment: %v", err)
	}
}

func machineSpec() map[string]any {
	return map[string]any{
		"clusterName":       capiCluster,
		"bootstrap":         map[string]any{"dataSecretName": "e2e-bootstrap"},
		"infrastructureRef": map[string]any{"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "KwokMachine", "name": "e2e"},
	}
}

func mdReplicas(ctx context.Context, t *testing.T, dyn dynamic.Interface, ns string) int {
	t.Helper()
	md, err := dyn.Resource(mdGVR).Namespace(ns).Get(ctx, capiMD, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("read MachineDeployment: %v", err)
	}
	n, _, _ := unstructured.NestedInt64(md.Object, "spec", "replicas")
	return int(n)
}

// capiStandIn plays the MachineSet controller and the infrastructure
// provider for one MachineDeployment, polling the API server.
type capiStandIn struct {
	dyn dynamic.Interface
	ns  string

	mu         sync.Mutex
	removed    []string
	violations []string
	seq        int
}

func (s *capiStandIn) run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := s.reconcile(ctx); err != nil && ctx.Err() == nil {
			s.violate("stand-in controller: %v", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *capiStandIn) violate(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

func (s *capiStandIn) result() ([]string, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.removed...), append([]string(nil), s.violations...)
}

// reconcile brings the Machines to spec.replicas and reports status.
func (s *capiStandIn) reconcile(ctx context.Context) error {
	md, err := s.dyn.Resource(mdGVR).Namespace(s.ns).Get(ctx, capiMD, metav1.GetOptions{})
	if err != nil {
		return err
	}
	want, _, _ := unstructured.NestedInt64(md.Object, "spec", "replicas")
	list, err := s.dyn.Resource(machineGVR).Namespace(s.ns).List(ctx, metav1.ListOptions{LabelSelector: clusterapi.DeploymentNameLabel + "=" + capiMD})
	if err != nil {
		return err
	}
	machines := list.Items
	for i := int64(len(machines)); i < want; i++ {
		if err := s.createMachine(ctx); err != nil {
			return err
		}
	}
	if extra := int64(len(machines)) - want; extra > 0 {
		// Marked Machines go first, then the newest: the MachineSet
		// controller's deletion order.
		sort.SliceStable(machines, func(i, j int) bool {
			_, mi := machines[i].GetAnnotations()[clusterapi.DeleteMachineAnnotation]
			_, mj := machines[j].GetAnnotations()[clusterapi.DeleteMachineAnnotation]
			if mi != mj {
				return mi
			}
			return machines[i].GetCreationTimestamp().After(machines[j].GetCreationTimestamp().Time)
		})
		for _, m := range machines[:extra] {
			if err := s.removeMachine(ctx, m); err != nil {
				return err
			}
		}
	}
	if err := unstructured.SetNestedField(md.Object, want, "status", "replicas"); err != nil {
		return err
	}
	if err := unstructured.SetNestedField(md.Object, clusterapi.DeploymentNameLabel+"="+capiMD, "status", "selector"); err != nil {
		return err
	}
	_, err = s.dyn.Resource(mdGVR).Namespace(s.ns).UpdateStatus(ctx, md, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// createMachine creates a Machine and, as the infrastructure provider, a
// kwok Node for it, then sets the Machine's status.nodeRef. The Node's
// name differs from the Machine's, so the provider must follow nodeRef.
func (s *capiStandIn) createMachine(ctx context.Context) error {
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	name := fmt.Sprintf("%s-m%d", capiMD, seq)
	m := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": clusterapi.Group + "/v1beta2", "kind": "Machine",
		"metadata": map[string]any{"name": name, "namespace": s.ns, "labels": map[string]any{
			clusterapi.DeploymentNameLabel: capiMD, "cluster.x-k8s.io/cluster-name": capiCluster,
		}},
		"spec": machineSpec(),
	}}
	created, err := s.dyn.Resource(machineGVR).Namespace(s.ns).Create(ctx, m, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create Machine %s: %w", name, err)
	}
	nodeName := fmt.Sprintf("capi-node-%d", seq)
	if _, err := env.AddKwokNode(ctx, testenv.NodeSpec{Name: nodeName, CPU: "4", Memory: "16Gi", Labels: map[string]string{capiPoolLabel: capiPoolValue}}); err != nil {
		return err
	}
	if err := unstructured.SetNestedField(created.Object, map[string]any{"name": nodeName}, "status", "nodeRef"); err != nil {
		return err
	}
	if _, err := s.dyn.Resource(machineGVR).Namespace(s.ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set status.nodeRef of Machine %s: %w", name, err)
	}
	return nil
}

// removeMachine checks the removal is one Swell asked for (the Machine is
// marked, its node Swell-cordoned with no server pod), then deletes the
// Machine and its Node.
func (s *capiStandIn) removeMachine(ctx context.Context, m unstructured.Unstructured) error {
	nodeName, _, _ := unstructured.NestedString(m.Object, "status", "nodeRef", "name")
	if _, ok := m.GetAnnotations()[clusterapi.DeleteMachineAnnotation]; !ok {
		s.violate("scale-down removed Machine %s (node %s) that Swell had not marked", m.GetName(), nodeName)
	}
	node, err := env.Clientset.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("node %s of Machine %s: %w", nodeName, m.GetName(), err)
	}
	if _, ok := node.Annotations[nodepool.CordonedAtAnnotation]; !ok || !node.Spec.Unschedulable {
		s.violate("Machine %s removed but its node %s was not cordoned by Swell", m.GetName(), nodeName)
	}
	pods, err := env.Clientset.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		LabelSelector: capiServerLabel, FieldSelector: fields.OneTermEqualSelector("spec.nodeName", nodeName).String(),
	})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		s.violate("Machine %s removed with server pod %s on its node %s", m.GetName(), p.Name, nodeName)
	}
	if err := s.dyn.Resource(machineGVR).Namespace(s.ns).Delete(ctx, m.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if err := env.Clientset.CoreV1().Nodes().Delete(ctx, nodeName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	s.mu.Lock()
	s.removed = append(s.removed, m.GetName()+"→"+nodeName)
	s.mu.Unlock()
	return nil
}

func capiServerName(i int) string { return fmt.Sprintf("capi-gs-%02d", i) }

func createCAPIServers(ctx context.Context, t *testing.T, ns string, n int) {
	t.Helper()
	for i := range n {
		createPod(ctx, t, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: capiServerName(i), Namespace: ns, Labels: map[string]string{capiServerLabel: capiPoolValue}},
			Spec: corev1.PodSpec{
				NodeSelector:                  map[string]string{capiPoolLabel: capiPoolValue},
				TerminationGracePeriodSeconds: ptr.To[int64](0),
				Containers: []corev1.Container{{Name: "server", Image: "registry.invalid/game-server:1", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("256Mi")},
				}}},
			},
		})
	}
}

// capiPoolState is the Cluster API pool as the test reads it from the API
// server, independently of the scaler.
type capiPoolState struct {
	nodes, readyNodes, running int
	free                       int64
}

func capiPool(ctx context.Context, ns string) (capiPoolState, error) {
	nodes, err := env.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: capiPoolLabel + "=" + capiPoolValue})
	if err != nil {
		return capiPoolState{}, err
	}
	pods, err := env.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: capiServerLabel})
	if err != nil {
		return capiPoolState{}, err
	}
	perNode := map[string]int64{}
	var st capiPoolState
	for _, p := range pods.Items {
		perNode[p.Spec.NodeName]++
		if p.Status.Phase == corev1.PodRunning {
			st.running++
		}
	}
	for _, n := range nodes.Items {
		if n.DeletionTimestamp != nil {
			continue
		}
		st.nodes++
		if nodeReady(&n) {
			st.readyNodes++
			if !n.Spec.Unschedulable {
				cpu := n.Status.Allocatable[corev1.ResourceCPU]
				st.free += cpu.Value() - perNode[n.Name]
			}
		}
	}
	return st, nil
}

// resourceRequests sums the API server's apiserver_request_total for one
// resource by verb and subresource ("PUT scale", "PUT " for the object
// itself).
func resourceRequests(ctx context.Context, t *testing.T, resource string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, s := range apiserverSeries(ctx, t, "apiserver_request_total") {
		if s.labels["resource"] == resource {
			out[s.labels["verb"]+" "+s.labels["subresource"]] += s.value
		}
	}
	return out
}

func deleteCAPINodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := env.Clientset.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: capiPoolLabel}); err != nil {
		t.Logf("clean up Cluster API pool nodes: %v", err)
	}
}
