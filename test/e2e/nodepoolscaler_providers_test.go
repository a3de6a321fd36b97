package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/controller/nodepoolscaler"
	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// TestNodePoolScalerClusterAPIGrowsTheMachineDeployment runs the
// NodePoolScaler kind with cloudProvider clusterapi, translated from a
// `swell nodepool` key set, in the suite's controller, against the real
// Cluster API CRDs with the test standing in for the MachineSet controller
// and the infrastructure provider (as TestNodePoolClusterAPI does). The
// controller holds only the default roles plus config/rbac/clusterapi,
// bound in the pool's namespace as an operator would. A burst of servers
// must grow the MachineDeployment through its scale subresource, and the
// object's status must report the grown pool with ProviderHealthy True.
func TestNodePoolScalerClusterAPIGrowsTheMachineDeployment(t *testing.T) {
	kube := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
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
	grantControllerClusterAPI(ctx, t, ns)
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

	spec, err := nodepoolscaler.SpecFromKeys(map[string]string{
		nodepool.KeyCloudProvider: nodepool.ProviderClusterAPI, nodepool.KeyNodePoolName: ns + "/" + capiMD,
		nodepool.KeyClusterName: capiCluster, nodepool.KeyNodeSelector: capiPoolLabel + "=" + capiPoolValue,
		nodepool.KeyMinNodes: strconv.Itoa(capiMin), nodepool.KeyMaxNodes: strconv.Itoa(capiMax),
		nodepool.KeyPodLabelName: capiServerLabel, nodepool.KeyPodLabelValue: capiPoolValue,
		nodepool.KeyBufferSlotSize: strconv.Itoa(capiBuffer), nodepool.KeyScaleLoopTick: "0.5",
		nodepool.KeyServerCPURequest: "1000", nodepool.KeyEmptyNodeExpiration: "60",
	}, nodepoolscaler.TokenMount{})
	if err != nil {
		t.Fatalf("translate: %v", err)
	}
	nps := &swellv1.NodePoolScaler{ObjectMeta: metav1.ObjectMeta{Name: "capi", Namespace: ns}, Spec: spec}
	if err := kube.Create(ctx, nps); err != nil {
		t.Fatalf("create NodePoolScaler: %v", err)
	}
	// Runs before the stand-in stops (defers run last in, first out).
	defer func() { _ = kube.Delete(context.Background(), nps) }()

	// 6 one-CPU servers on 4-CPU nodes plus a buffer of 3: 9 slots, so the
	// MachineDeployment must go from 1 to at least 3 replicas.
	createCAPIServers(ctx, t, ns, 6)
	waitFor(ctx, t, "6 servers running, a buffer of 3 free slots, and status showing the grown pool", func() (bool, error) {
		st, err := capiPool(ctx, ns)
		if err != nil || st.running != 6 || st.free < capiBuffer {
			return false, err
		}
		s, err := npsStatusOf(ctx, kube, ns, "capi")
		return err == nil && s.PoolSize >= 3 && s.SlotsUsed == 6, err
	})
	grown := mdReplicas(ctx, t, dyn, ns)
	if grown < 3 || grown > capiMax {
		t.Fatalf("MachineDeployment spec.replicas %d after the burst, want 3..%d", grown, capiMax)
	}
	s, err := npsStatusOf(ctx, kube, ns, "capi")
	if err != nil {
		t.Fatal(err)
	}
	if c := meta.FindStatusCondition(s.Conditions, swellv1.ConditionProviderHealthy); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("ProviderHealthy %+v, want True", c)
	}
	after := resourceRequests(ctx, t, "machinedeployments")
	puts := after["PUT scale"] - before["PUT scale"]
	objectWrites := after["PUT "] + after["PATCH "] - before["PUT "] - before["PATCH "]
	t.Logf("MachineDeployment spec.replicas 1 → %d; status size %d, used %d, free %d; lastAction %q; scale PUTs %v, object writes %v",
		grown, s.PoolSize, s.SlotsUsed, s.SlotsFree, s.LastAction, puts, objectWrites)
	if puts < 1 {
		t.Errorf("scale subresource PUTs %v, want at least one", puts)
	}
	if objectWrites != 0 {
		t.Errorf("%v writes to the MachineDeployment object itself; only its scale subresource may be written", objectWrites)
	}
	_, violations := sim.result()
	for _, v := range violations {
		t.Error(v)
	}
}

// grantControllerClusterAPI binds the shipped clusterapi ClusterRole to the
// suite controller's ServiceAccount in ns only.
func grantControllerClusterAPI(ctx context.Context, t *testing.T, ns string) {
	t.Helper()
	role := &rbacv1.ClusterRole{}
	readYAML(t, "../../config/rbac/clusterapi/role.yaml", role)
	role.Name = "e2e-nps-" + role.Name
	if _, err := env.Clientset.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create ClusterRole: %v", err)
	}
	t.Cleanup(func() {
		_ = env.Clientset.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
	})
	sa, _ := strings.CutPrefix(controllerServiceAccount, "system:serviceaccount:")
	saNS, saName, _ := strings.Cut(sa, ":")
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "swell-controller-clusterapi", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: saName, Namespace: saNS}},
	}
	if _, err := env.Clientset.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create RoleBinding: %v", err)
	}
}

func npsStatusOf(ctx context.Context, kube client.Client, ns, name string) (swellv1.NodePoolScalerStatus, error) {
	var nps swellv1.NodePoolScaler
	if err := kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &nps); err != nil {
		return swellv1.NodePoolScalerStatus{}, err
	}
	return nps.Status, nil
}

// TestNodePoolScalerProviderRulesNameTheField shows the CRD's rules for the
// providers added to the kind, at the real API server: a spec missing what
// its provider needs is refused naming the field, and a complete one of
// each provider is accepted.
func TestNodePoolScalerProviderRulesNameTheField(t *testing.T) {
	kube := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	base := func(p swellv1.CloudProvider) swellv1.NodePoolScalerSpec {
		return swellv1.NodePoolScalerSpec{
			CloudProvider: p, NodeSelector: "swell.dev/e2e-rules=x",
			ServerPodLabelName: "app", ServerCPUResourceRequest: ptr.To(intstr.FromInt32(1000)),
		}
	}
	hetzner := func() swellv1.NodePoolScalerSpec {
		s := base(swellv1.ProviderHetzner)
		s.CloudProviderTokenSecretRef = &swellv1.SecretKeyRef{Name: "hcloud"}
		s.NodePoolName, s.HcloudServerType, s.HcloudImage = "game", "cpx31", "ubuntu-24.04"
		s.HcloudCloudInitSecretRef = &swellv1.CloudInitSecretRef{Name: "join"}
		return s
	}
	cloud := func(p swellv1.CloudProvider) swellv1.NodePoolScalerSpec {
		s := base(p)
		s.CloudProviderTokenSecretRef = &swellv1.SecretKeyRef{Name: string(p)}
		s.ClusterName, s.NodePoolName = "prod", "pool-1"
		return s
	}
	without := func(s swellv1.NodePoolScalerSpec, drop func(*swellv1.NodePoolScalerSpec)) swellv1.NodePoolScalerSpec {
		drop(&s)
		return s
	}
	for i, tc := range []struct {
		name string
		spec swellv1.NodePoolScalerSpec
		want string // "" = accepted
	}{
		{"hetzner complete", hetzner(), ""},
		{"hetzner without server type", without(hetzner(), func(s *swellv1.NodePoolScalerSpec) { s.HcloudServerType = "" }), "spec.hcloudServerType is required for cloudProvider hetzner"},
		{"hetzner without image", without(hetzner(), func(s *swellv1.NodePoolScalerSpec) { s.HcloudImage = "" }), "spec.hcloudImage is required for cloudProvider hetzner"},
		{"hetzner without cloud-init", without(hetzner(), func(s *swellv1.NodePoolScalerSpec) { s.HcloudCloudInitSecretRef = nil }), "spec.hcloudCloudInitSecretRef is required for cloudProvider hetzner"},
		{"hetzner without token", without(hetzner(), func(s *swellv1.NodePoolScalerSpec) { s.CloudProviderTokenSecretRef = nil }), "spec.cloudProviderTokenSecretRef is required for cloudProvider hetzner"},
		{"hetzner without pool name", without(hetzner(), func(s *swellv1.NodePoolScalerSpec) { s.NodePoolName = "" }), "spec.nodePoolName is required"},
		{"hcloud field on kwok", without(base(swellv1.ProviderKwok), func(s *swellv1.NodePoolScalerSpec) { s.HcloudImage = "ubuntu" }), "apply only to cloudProvider hetzner"},
		{"linode complete", cloud(swellv1.ProviderLinode), ""},
		{"linode without cluster", without(cloud(swellv1.ProviderLinode), func(s *swellv1.NodePoolScalerSpec) { s.ClusterName = "" }), "spec.clusterName is required for cloudProvider linode and vultr"},
		{"vultr complete", cloud(swellv1.ProviderVultr), ""},
		{"vultr without token", without(cloud(swellv1.ProviderVultr), func(s *swellv1.NodePoolScalerSpec) { s.CloudProviderTokenSecretRef = nil }), "spec.cloudProviderTokenSecretRef is required"},
		{"clusterapi complete", without(base(swellv1.ProviderClusterAPI), func(s *swellv1.NodePoolScalerSpec) { s.NodePoolName = "capi-system/game-md-0" }), ""},
		{"clusterapi without MachineDeployment", base(swellv1.ProviderClusterAPI), "spec.nodePoolName is required"},
		{"clusterapi name with two slashes", without(base(swellv1.ProviderClusterAPI), func(s *swellv1.NodePoolScalerSpec) { s.NodePoolName = "a/b/c" }), "spec.nodePoolName"},
		{"long pool name off clusterapi", without(cloud(swellv1.ProviderLinode), func(s *swellv1.NodePoolScalerSpec) { s.NodePoolName = strings.Repeat("p", 64) }), "spec.nodePoolName may be at most 63 characters"},
		{"none complete", without(base(swellv1.ProviderNone), func(s *swellv1.NodePoolScalerSpec) { s.CapacityBuffer = "games/slots" }), ""},
		{"none without capacityBuffer", base(swellv1.ProviderNone), "spec.capacityBuffer is required for cloudProvider none"},
		{"capacityBuffer not a name", without(base(swellv1.ProviderNone), func(s *swellv1.NodePoolScalerSpec) { s.CapacityBuffer = "Games/Slots" }), "spec.capacityBuffer"},
		{"capacityBuffer with a set selector", without(base(swellv1.ProviderNone), func(s *swellv1.NodePoolScalerSpec) {
			s.CapacityBuffer, s.NodeSelector = "games/slots", "pool in (a,b)"
		}), "spec.nodeSelector must be key=value[,key=value] with spec.capacityBuffer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := &swellv1.NodePoolScaler{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("rules-%d", i), Namespace: ns}, Spec: tc.spec}
			err := kube.Create(ctx, obj, client.DryRunAll)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == "":
			case err == nil:
				t.Fatalf("accepted; want an error containing %q", tc.want)
			case !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %v; want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestNodePoolScalerNonePublishesCapacityBuffer runs a cloudProvider none
// NodePoolScaler in the suite's controller against SIG Autoscaling's
// CapacityBuffer CRD (testdata/capacitybuffer), the controller holding the
// default roles plus config/rbac/capacitybuffer: the buffer of max(2, 50%
// of the servers) is published at once and follows servers arriving, and
// the object reports Ready with reason PublishingCapacityBuffer.
func TestNodePoolScalerNonePublishesCapacityBuffer(t *testing.T) {
	kube := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := env.InstallCRDs(ctx, "testdata/capacitybuffer"); err != nil {
		t.Fatalf("install the CapacityBuffer CRD: %v", err)
	}
	ns := newNamespace(ctx, t)
	dyn, err := dynamic.NewForConfig(env.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	grantControllerCapacityBuffer(ctx, t)

	spec, err := nodepoolscaler.SpecFromKeys(map[string]string{
		nodepool.KeyCloudProvider: nodepool.ProviderNone, nodepool.KeyCapacityBuffer: ns + "/game-servers",
		nodepool.KeyNodeSelector: "swell.dev/pool=servers", nodepool.KeyPodLabelName: cbServerLabel, nodepool.KeyPodLabelValue: ns,
		nodepool.KeyBufferSlotSize: "2", nodepool.KeyBufferSlotPercent: "50",
		nodepool.KeyServerCPURequest: "1000", nodepool.KeyServerMemoryRequest: "256Mi",
	}, nodepoolscaler.TokenMount{})
	if err != nil {
		t.Fatalf("translate: %v", err)
	}
	nps := &swellv1.NodePoolScaler{ObjectMeta: metav1.ObjectMeta{Name: "publish", Namespace: ns}, Spec: spec}
	if err := kube.Create(ctx, nps); err != nil {
		t.Fatalf("create NodePoolScaler: %v", err)
	}
	defer func() { _ = kube.Delete(context.Background(), nps) }()

	waitBufferReplicas(ctx, t, dyn, ns, 2, "the buffer published with no server: 2")
	createPendingServers(ctx, t, ns, 0, 6)
	waitBufferReplicas(ctx, t, dyn, ns, 3, "6 servers: 50% is 3")
	createPendingServers(ctx, t, ns, 6, 4)
	waitBufferReplicas(ctx, t, dyn, ns, 5, "10 servers: 50% is 5")

	waitFor(ctx, t, "Ready=True PublishingCapacityBuffer", func() (bool, error) {
		s, err := npsStatusOf(ctx, kube, ns, "publish")
		if err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(s.Conditions, swellv1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != nodepoolscaler.ReasonPublishing {
			return false, fmt.Errorf("Ready %+v", c)
		}
		t.Logf("Ready: %s", c.Message)
		return true, nil
	})
}

// grantControllerCapacityBuffer binds the shipped capacitybuffer ClusterRole
// to the suite controller's ServiceAccount (cluster-wide: the publisher
// counts server pods in every namespace).
func grantControllerCapacityBuffer(ctx context.Context, t *testing.T) {
	t.Helper()
	role := &rbacv1.ClusterRole{}
	readYAML(t, "../../config/rbac/capacitybuffer/role.yaml", role)
	role.Name = "e2e-nps-" + role.Name
	sa, _ := strings.CutPrefix(controllerServiceAccount, "system:serviceaccount:")
	saNS, saName, _ := strings.Cut(sa, ":")
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: saName, Namespace: saNS}},
	}
	if _, err := env.Clientset.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create ClusterRole: %v", err)
	}
	if _, err := env.Clientset.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create ClusterRoleBinding: %v", err)
	}
	t.Cleanup(func() {
		_ = env.Clientset.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
		_ = env.Clientset.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
	})
}

// TestNodePoolScalerHetznerReadsTheCloudInitSecret shows the controller
// reading hetzner's cloud-init Secret live, as it reads the token: with the
// token Secret present and the cloud-init Secret missing, the object reports
// Ready=False SecretUnavailable naming spec.hcloudCloudInitSecretRef, and no
// provider is built (so no call reaches Hetzner).
func TestNodePoolScalerHetznerReadsTheCloudInitSecret(t *testing.T) {
	kube := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	tok := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "hcloud", Namespace: ns}, Data: map[string][]byte{"token": []byte("hc-e2e")}}
	if _, err := env.Clientset.CoreV1().Secrets(ns).Create(ctx, tok, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	spec := swellv1.NodePoolScalerSpec{
		CloudProvider: swellv1.ProviderHetzner, NodePoolName: "game", NodeSelector: "swell.dev/e2e-hcloud=x",
		ServerPodLabelName: "app", ServerCPUResourceRequest: ptr.To(intstr.FromInt32(1000)),
		CloudProviderTokenSecretRef: &swellv1.SecretKeyRef{Name: "hcloud"},
		HcloudServerType:            "cpx31", HcloudImage: "ubuntu-24.04",
		HcloudCloudInitSecretRef: &swellv1.CloudInitSecretRef{Name: "hcloud-join"},
	}
	nps := &swellv1.NodePoolScaler{ObjectMeta: metav1.ObjectMeta{Name: "hcloud", Namespace: ns}, Spec: spec}
	if err := kube.Create(ctx, nps); err != nil {
		t.Fatalf("create NodePoolScaler: %v", err)
	}
	defer func() { _ = kube.Delete(context.Background(), nps) }()
	waitFor(ctx, t, "Ready=False SecretUnavailable naming spec.hcloudCloudInitSecretRef", func() (bool, error) {
		s, err := npsStatusOf(ctx, kube, ns, "hcloud")
		if err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(s.Conditions, swellv1.ConditionReady)
		if c == nil || c.Reason != nodepoolscaler.ReasonSecretUnavailable || !strings.Contains(c.Message, "spec.hcloudCloudInitSecretRef: read Secret "+ns+"/hcloud-join") {
			return false, fmt.Errorf("Ready %+v", c)
		}
		t.Logf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
		return true, nil
	})
}
