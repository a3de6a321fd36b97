package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/controller/qworker"
	"github.com/swell-autoscaler/swell/internal/ociimage"
	"github.com/swell-autoscaler/swell/internal/procnode"
	"github.com/swell-autoscaler/swell/internal/testenv"
)

// chartImage is the reference the test builds Swell's image under and the
// chart's Deployment names.
const chartImage = "ghcr.io/swell-autoscaler/swell:e2e"

// TestChartControllerReconciles installs Swell the way an operator would
// and shows the installed controller doing its job with nothing but the
// chart's RBAC: it builds the image (static binary, OCI archive, no Docker),
// gives it to a process node, renders and applies charts/swell pointing at
// that image, waits for the controller pod to pass its /readyz probe and
// hold the leader lease, and then has it scale a QWorker on a Redis backlog.
//
// The test runs in its own environment: in the shared one, the in-process
// controller of the other suites (admin credentials) could reconcile the
// sample and prove nothing. Here the chart's controller is the only one, and
// it reaches the apiserver with its pod's ServiceAccount token.
func TestChartControllerReconciles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	archive := buildChartImage(ctx, t)

	e := testenv.New(t, testenv.Options{
		APIServer: true, ControllerManager: true, Scheduler: true,
		KwokNodes: []testenv.NodeSpec{{Name: "chart-kwok-0"}},
		Redis:     true,
	})
	node := startImageNode(ctx, t, e, archive, "")

	const release, ns = "swell", "swell-system"
	metricsPort, probesPort := chartFreePort(t), chartFreePort(t)
	crds, objs := renderChart(t, release, ns, map[string]any{
		"image":     map[string]any{"repository": "ghcr.io/swell-autoscaler/swell", "tag": "e2e", "pullPolicy": "Never"},
		"replicas":  1,
		"nodePools": map[string]any{"enabled": false},
		"metrics":   map[string]any{"port": metricsPort},
		"probes":    map[string]any{"port": probesPort},
		// The process node runs the controller; its taint keeps other pods off.
		"nodeSelector": map[string]any{corev1.LabelHostname: node.Name()},
		"tolerations":  []any{map[string]any{"key": procnode.Taint, "operator": "Exists", "effect": "NoSchedule"}},
		// The suite's Redis listens on loopback, refused to ScalerConfigs
		// unless allowed, as an operator allows a broker's range.
		"extraArgs": []any{"--dev-logs", "--egress-allow=127.0.0.1/32"},
	})
	installChart(ctx, t, e, release, ns, crds, objs)

	pod := waitForReadyController(ctx, t, e, node, ns)
	t.Logf("controller pod %s Ready on %s", pod.Name, pod.Spec.NodeName)
	assertServiceAccountIdentity(ctx, t, e, pod, fmt.Sprintf("system:serviceaccount:%s:%s", ns, renderedName(t, objs, "ServiceAccount")))
	waitFor(ctx, t, "the leader lease", func() (bool, error) {
		l, err := e.Clientset.CoordinationV1().Leases(ns).Get(ctx, "swell-controller.swell.dev", metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // not created yet
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" || l.Spec.RenewTime == nil {
			return false, nil
		}
		t.Logf("leader lease %s/%s held by %s", ns, l.Name, *l.Spec.HolderIdentity)
		return true, nil
	})

	reconcileSample(ctx, t, e)
}

// buildChartImage builds the swell binary and its image archive.
func buildChartImage(ctx context.Context, t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "swell")
	if err := ociimage.BuildBinary(ctx, ociimage.Binary{ModuleDir: "../..", Version: "e2e", Out: bin}); err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.Build(ociimage.Spec{Binary: bin, Version: "e2e", Created: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "swell-e2e.oci.tar")
	if err := ociimage.WriteArchive(img, chartImage, archive); err != nil {
		t.Fatal(err)
	}
	return archive
}

// startImageNode registers a process node that holds the image and gives
// pods their ServiceAccount's credentials (not the environment's admin
// kubeconfig, which testenv's own process node hands out). podIP is the
// address pods report ("" for procnode's 127.0.0.1); a pod a Service must
// select needs a non-loopback one, because the apiserver refuses loopback
// addresses in EndpointSlices.
func startImageNode(ctx context.Context, t *testing.T, e *testenv.Env, archive, podIP string) *procnode.Node {
	t.Helper()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("32Gi"), corev1.ResourcePods: resource.MustParse("110"),
	}
	const name = "chart-process-node"
	bgCtx, stop := context.WithCancel(context.Background())
	n, err := procnode.Start(ctx, bgCtx, procnode.Config{
		Client: e.Clientset,
		Node: &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name, corev1.LabelOSStable: "linux"}},
			Status:     corev1.NodeStatus{Capacity: capacity, Allocatable: capacity.DeepCopy()},
		},
		WorkDir:         filepath.Join(e.Dir, "chart-process-node"),
		Images:          map[string]string{chartImage: archive},
		ServiceAccounts: &procnode.APIServer{Host: e.RESTConfig.Host, CAData: e.RESTConfig.CAData},
		PodIP:           podIP,
	})
	if err != nil {
		stop()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Shutdown(5 * time.Second)
		stop()
	})
	return n
}

// waitForReadyController waits for the Deployment's pod to be Running and
// Ready, which on the process node means its /readyz probe passed. The
// controller's log is printed if the test fails.
func waitForReadyController(ctx context.Context, t *testing.T, e *testenv.Env, node *procnode.Node, ns string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	t.Cleanup(func() {
		if t.Failed() && pod != nil {
			b, _ := os.ReadFile(node.LogPath(ns, pod.Name, "controller"))
			t.Logf("controller log:\n%s", b)
		}
	})
	waitFor(ctx, t, "the controller pod Running and Ready", func() (bool, error) {
		pods, err := e.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=swell"})
		if err != nil {
			return false, err
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Spec.NodeName != node.Name() {
				continue
			}
			pod = p
			if failed := startFailure(p); failed != "" {
				t.Fatalf("controller pod %s did not start: %s", p.Name, failed)
			}
			if p.Status.Phase == corev1.PodRunning && podReady(p) {
				return true, nil
			}
		}
		return false, nil
	})
	return pod
}

// startFailure reports a container that could not start at all (a missing
// image, a bad entrypoint), so the test fails with the reason.
func startFailure(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if term := cs.State.Terminated; term != nil && term.Reason == "StartError" {
			return term.Message
		}
	}
	return ""
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// assertServiceAccountIdentity reads the controller process's KUBECONFIG
// from /proc and asks the apiserver who that kubeconfig authenticates as:
// the chart's ServiceAccount, not an admin.
func assertServiceAccountIdentity(ctx context.Context, t *testing.T, e *testenv.Env, pod *corev1.Pod, want string) {
	t.Helper()
	if len(pod.Status.ContainerStatuses) != 1 {
		t.Fatalf("controller pod has %d container statuses", len(pod.Status.ContainerStatuses))
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(pod.Status.ContainerStatuses[0].ContainerID, "process://"))
	if err != nil {
		t.Fatalf("container id %q: %v", pod.Status.ContainerStatuses[0].ContainerID, err)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	var kubeconfig string
	for _, kv := range strings.Split(string(environ), "\x00") {
		if v, ok := strings.CutPrefix(kv, "KUBECONFIG="); ok {
			kubeconfig = v
		}
	}
	if kubeconfig == "" || kubeconfig == e.Kubeconfig {
		t.Fatalf("controller process KUBECONFIG = %q, want its pod's own (admin is %s)", kubeconfig, e.Kubeconfig)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := review.Status.UserInfo.Username; got != want {
		t.Fatalf("controller authenticates as %q, want %q", got, want)
	}
	for _, g := range review.Status.UserInfo.Groups {
		if g == "system:masters" {
			t.Fatalf("controller's credentials are in system:masters: %v", review.Status.UserInfo.Groups)
		}
	}
}

// reconcileSample creates a Redis ScalerConfig and a QWorker whose workers
// are kwok pods, pushes a backlog, and waits for the chart's controller to
// create the workers and report the backlog in status. The objects go
// through a dynamic client: a controller-runtime client would want the
// process-wide logger that only the in-process controller's tests set.
func reconcileSample(ctx context.Context, t *testing.T, e *testenv.Env) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(e.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	const ns, name = "chart-sample", "workers"
	if _, err := e.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	queue := ns + "-tasks"
	scalerConfigs := dyn.Resource(qv1.GroupVersion.WithResource("scalerconfigs")).Namespace(ns)
	qworkers := dyn.Resource(qv1.GroupVersion.WithResource("qworkers")).Namespace(ns)
	if err := createTyped(ctx, scalerConfigs, "ScalerConfig", redisScalerConfig(ns, "redis", e.RedisAddr)); err != nil {
		t.Fatal(err)
	}
	if err := createTyped(ctx, qworkers, "QWorker", kwokQWorker(ns, name, queue, 0, 8, 0.25)); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: e.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	// 10 messages × 0.25 = 2.5 → 3 workers.
	for i := range 10 {
		if err := rdb.LPush(ctx, queue, fmt.Sprintf("t%d", i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(ctx, t, "3 running workers of the sample", func() (bool, error) {
		pods, err := e.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: qworker.LabelQWorker + "=" + name})
		if err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				running++
			}
		}
		return len(pods.Items) == 3 && running == 3, nil
	})
	waitFor(ctx, t, "the sample's status", func() (bool, error) {
		u, err := qworkers.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		qw := &qv1.QWorker{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, qw); err != nil {
			return false, err
		}
		return qw.Status.ObservedGeneration == qw.Generation && qw.Status.Backlog != nil && *qw.Status.Backlog == 10 &&
			qw.Status.DesiredReplicas == 3, nil
	})
}

// createTyped creates a typed object of Swell's API through a dynamic client.
func createTyped(ctx context.Context, ri dynamic.ResourceInterface, kind string, obj runtime.Object) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return fmt.Errorf("convert %s: %w", kind, err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(qv1.GroupVersion.String())
	u.SetKind(kind)
	if _, err := ri.Create(ctx, u, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create %s %s: %w", kind, u.GetName(), err)
	}
	return nil
}

// renderedName is the name of the one rendered object of kind.
func renderedName(t *testing.T, objs []*unstructured.Unstructured, kind string) string {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind {
			return o.GetName()
		}
	}
	t.Fatalf("chart rendered no %s", kind)
	return ""
}

// chartFreePort picks a free TCP port for the controller to bind on this
// host (the process node shares the host's network).
func chartFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}
