// Package procnode is a test-only node agent: pods bound to its node run as
// local processes instead of containers. It exists so end-to-end tests can run
// real worker code (and count lost tasks) against a real control plane
// without a container runtime.
//
// What it does, like a kubelet would: registers its Node and keeps it Ready
// with heartbeats; runs each container's command and args with the pod's env
// (HOSTNAME = pod name, fieldRef, secretKeyRef and configMapKeyRef resolved);
// reports Running, then Succeeded or Failed from the exit codes, honouring the
// restart policy; on graceful deletion sends SIGTERM, waits the grace period,
// sends SIGKILL, and then removes the pod object; serves kubelet's
// /metrics/resource with the containers' real CPU and memory (metrics.go).
//
// Images: a container whose image the node was given as an archive
// (Config.Images, see internal/ociimage) runs the image's entrypoint and cmd
// from the unpacked root, without a chroot (image.go); any other container
// runs its command from the host and fails without one. ServiceAccounts:
// with Config.ServiceAccounts, a container that mounts the ServiceAccount
// token gets a kubeconfig for its pod's ServiceAccount (serviceaccount.go).
//
// Readiness probes (httpGet, tcpSocket) decide when a container is ready;
// without one a container is ready once started (probe.go).
//
// What it does not do: liveness, startup, exec and grpc probes, volumes,
// users and security contexts, resource limits, networking.
// The virtual-kubelet library was considered: it brings its own pinned
// Kubernetes libraries and an HTTP/provider framework this agent does not
// need, and still leaves env resolution and process handling to us.
package procnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// Label marks a process node; Taint keeps ordinary pods off it, so only pods
// that tolerate it (or name the node) run as processes.
const (
	Label = "swell.dev/process-node"
	Taint = "swell.dev/process-node"
)

// heartbeatEvery is how often the node reports Ready; the node lifecycle
// controller's default grace is 40 s.
const heartbeatEvery = 10 * time.Second

// Config configures a process node.
type Config struct {
	Client kubernetes.Interface
	// Node is registered as given, plus Label, Taint and a Ready status.
	Node *corev1.Node
	// WorkDir holds one log per container: <namespace>_<pod>_<container>.log.
	WorkDir string
	// ExtraEnv is added to every container, after its own env (for example a
	// KUBECONFIG so workers reach the test apiserver). A pod that gets its
	// ServiceAccount's credentials keeps its own KUBECONFIG.
	ExtraEnv map[string]string
	// Images maps image references, as pods name them, to image archives
	// (an OCI archive from `make image`, or `docker save` output).
	Images map[string]string
	// ServiceAccounts, when set, gives every container that mounts the
	// ServiceAccount token a kubeconfig with its pod's ServiceAccount token
	// for this apiserver, instead of any admin credentials in ExtraEnv.
	ServiceAccounts *APIServer
	// PodIP is the address reported as every pod's IP; empty means
	// 127.0.0.1. The apiserver refuses loopback addresses in Endpoints and
	// EndpointSlices, so pods a Service selects need a non-loopback address
	// of this host here (the processes share the host's network).
	PodIP string
}

// Node is a running process node.
type Node struct {
	cfg    Config
	name   string
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	pods map[types.UID]*podRunner

	images *imageStore

	// metrics serves /metrics/resource, as kubelet does (see metrics.go).
	metrics *metricsServer
}

// Start registers the node and starts serving its pods until bgCtx ends or
// Shutdown is called. ctx bounds the registration only.
func Start(ctx, bgCtx context.Context, cfg Config) (*Node, error) {
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("process node work dir: %w", err)
	}
	node := cfg.Node.DeepCopy()
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	node.Labels[Label] = "true"
	node.Spec.Taints = append(node.Spec.Taints, corev1.Taint{Key: Taint, Value: "true", Effect: corev1.TaintEffectNoSchedule})
	created, err := cfg.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("register process node %s: %w", node.Name, err)
	}
	runCtx, cancel := context.WithCancel(bgCtx)
	n := &Node{
		cfg: cfg, name: created.Name, cancel: cancel, pods: map[types.UID]*podRunner{},
		images: newImageStore(cfg.Images, filepath.Join(cfg.WorkDir, "images")),
	}
	if err := n.startMetrics(); err != nil {
		cancel()
		return nil, err
	}
	if err := n.heartbeat(ctx); err != nil {
		cancel()
		n.stopMetrics()
		return nil, fmt.Errorf("process node %s status: %w", n.name, err)
	}
	n.wg.Add(1)
	go n.heartbeatLoop(runCtx)
	if err := n.watchPods(ctx, runCtx); err != nil {
		cancel()
		n.stopMetrics()
		return nil, err
	}
	return n, nil
}

// Name is the node's name.
func (n *Node) Name() string { return n.name }

// LogPath is where a container's output goes.
func (n *Node) LogPath(namespace, pod, container string) string {
	return filepath.Join(n.cfg.WorkDir, fmt.Sprintf("%s_%s_%s.log", namespace, pod, container))
}

// Shutdown stops every container (SIGTERM, then SIGKILL after grace) and the
// node's loops. The Node object is left as it is.
func (n *Node) Shutdown(grace time.Duration) {
	n.cancel()
	n.mu.Lock()
	runners := make([]*podRunner, 0, len(n.pods))
	for _, r := range n.pods {
		runners = append(runners, r)
	}
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.kill(grace)
		}()
	}
	wg.Wait()
	n.wg.Wait()
	n.stopMetrics()
}

func (n *Node) heartbeatLoop(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = n.heartbeat(ctx) // the next beat retries; a missed one is harmless
		}
	}
}

// heartbeat writes a Ready condition with a fresh heartbeat time, retrying
// when the node lifecycle controller changed the node meanwhile.
func (n *Node) heartbeat(ctx context.Context) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error { return n.writeNodeStatus(ctx) })
}

func (n *Node) writeNodeStatus(ctx context.Context) error {
	node, err := n.cfg.Client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get process node: %w", err)
	}
	now := metav1.Now()
	ready := corev1.NodeCondition{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "ProcessNodeReady",
		Message: "swell process node runs pods as local processes", LastHeartbeatTime: now, LastTransitionTime: now,
	}
	conds := []corev1.NodeCondition{ready}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				conds[0].LastTransitionTime = c.LastTransitionTime
			}
			continue
		}
		conds = append(conds, c)
	}
	node.Status.Conditions = conds
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: n.name}}
	// metrics-server (--kubelet-use-node-status-port) scrapes this port.
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(n.MetricsPort())
	node.Status.NodeInfo.KubeletVersion = "swell-procnode"
	node.Status.NodeInfo.OperatingSystem = "linux"
	node.Status.NodeInfo.Architecture = "amd64"
	_, err = n.cfg.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

// watchPods runs an informer over the pods bound to this node.
func (n *Node) watchPods(ctx, runCtx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(n.cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", n.name).String()
		}))
	inf := factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { n.sync(runCtx, obj) },
		UpdateFunc: func(_, obj any) { n.sync(runCtx, obj) },
		DeleteFunc: func(obj any) { n.gone(obj) },
	})
	if err != nil {
		return fmt.Errorf("pod informer: %w", err)
	}
	factory.Start(runCtx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("process node pod informer did not sync")
	}
	return nil
}

// sync starts a pod the first time it is seen and begins its termination
// once it is marked for deletion.
func (n *Node) sync(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	n.mu.Lock()
	r, known := n.pods[pod.UID]
	if !known {
		if pod.DeletionTimestamp != nil || isTerminal(pod) {
			n.mu.Unlock()
			if pod.DeletionTimestamp != nil {
				n.finalDelete(ctx, pod)
			}
			return
		}
		r = newPodRunner(n, pod)
		n.pods[pod.UID] = r
	}
	n.mu.Unlock()
	if !known {
		go r.run(ctx)
	}
	if known && pod.DeletionTimestamp == nil && readyStale(pod) {
		go r.writeStatus(ctx)
	}
	if pod.DeletionTimestamp != nil {
		grace := time.Duration(30) * time.Second
		if pod.DeletionGracePeriodSeconds != nil {
			grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
		}
		go r.terminate(ctx, grace)
	}
}

// gone kills the processes of a pod whose object was removed (force delete).
func (n *Node) gone(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	n.mu.Lock()
	r := n.pods[pod.UID]
	delete(n.pods, pod.UID)
	n.mu.Unlock()
	if r != nil {
		go r.kill(0)
	}
}

// finalDelete removes a terminated pod object, as kubelet does once the
// containers of a pod marked for deletion are gone.
func (n *Node) finalDelete(ctx context.Context, pod *corev1.Pod) {
	zero := int64(0)
	err := n.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		fmt.Fprintf(os.Stderr, "procnode: delete pod %s/%s: %v\n", pod.Namespace, pod.Name, err)
	}
}

func isTerminal(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}
