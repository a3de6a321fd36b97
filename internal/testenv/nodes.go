package testenv

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/swell-autoscaler/swell/internal/procnode"
)

// KwokAnnotation marks the nodes kwok manages; other nodes (the process
// node, nodes a test registers by hand) are left alone by kwok.
const KwokAnnotation = "kwok.x-k8s.io/node"

// startKwok runs kwok for nodes annotated as fake, registers the requested
// nodes and waits until all of them are Ready.
func (e *Env) startKwok(ctx context.Context, nodes []NodeSpec) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	p, err := e.start("kwok", e.bin("kwok"), []string{
		"--kubeconfig=" + e.Kubeconfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + KwokAnnotation + "=fake",
		"--config=" + filepath.Join(e.binDir, "kwok-stages.yaml"),
		"--server-address=127.0.0.1:" + fmt.Sprint(port),
		"--node-lease-duration-seconds=40",
		"--cidr=10.244.0.0/16",
		"--node-ip=127.0.0.1",
	}, nil)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		node, err := n.node()
		if err != nil {
			return err
		}
		node.Annotations = map[string]string{KwokAnnotation: "fake"}
		if _, err := e.Clientset.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create node %s: %w", n.Name, err)
		}
		names = append(names, n.Name)
	}
	return p.waitFor(ctx, "managing its nodes", e.nodesReady(names))
}

// AddKwokNode registers one more kwok node at run time (node-pool tests grow
// the pool this way) without waiting for it to turn Ready.
func (e *Env) AddKwokNode(ctx context.Context, n NodeSpec) (*corev1.Node, error) {
	node, err := n.node()
	if err != nil {
		return nil, err
	}
	node.Annotations = map[string]string{KwokAnnotation: "fake"}
	created, err := e.Clientset.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create node %s: %w", n.Name, err)
	}
	return created, nil
}

func (e *Env) startProcessNode(ctx, bgCtx context.Context, n NodeSpec) error {
	node, err := n.node()
	if err != nil {
		return err
	}
	pn, err := procnode.Start(ctx, bgCtx, procnode.Config{
		Client:  e.Clientset,
		Node:    node,
		WorkDir: filepath.Join(e.Dir, "process-node"),
		// Workers reach this apiserver as kubectl would: there is no
		// in-cluster service-account mount for a local process.
		ExtraEnv: map[string]string{"KUBECONFIG": e.Kubeconfig},
	})
	if err != nil {
		return err
	}
	e.procNode = pn
	e.ProcessNodeName = node.Name
	return pollUntil(ctx, e.nodesReady([]string{node.Name}))
}

// nodesReady checks that every named node has condition Ready=True.
func (e *Env) nodesReady(names []string) func(context.Context) error {
	return func(ctx context.Context) error {
		list, err := e.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		ready := sets.New[string]()
		for _, n := range list.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready.Insert(n.Name)
				}
			}
		}
		if missing := sets.New(names...).Difference(ready); missing.Len() > 0 {
			return fmt.Errorf("nodes not ready: %s", strings.Join(sets.List(missing), ", "))
		}
		return nil
	}
}

// node builds the Node object, applying defaults and parsing quantities.
func (n NodeSpec) node() (*corev1.Node, error) {
	if n.Name == "" {
		return nil, fmt.Errorf("node spec: name is required")
	}
	cpu, mem, pods := orDefault(n.CPU, "8"), orDefault(n.Memory, "32Gi"), orDefault(n.Pods, "110")
	capacity := corev1.ResourceList{}
	for name, v := range map[corev1.ResourceName]string{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem, corev1.ResourcePods: pods} {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("node %s: %s %q is not a quantity: %w", n.Name, name, v, err)
		}
		capacity[name] = q
	}
	labels := map[string]string{corev1.LabelHostname: n.Name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64"}
	for k, v := range n.Labels {
		labels[k] = v
	}
	taints := make([]corev1.Taint, 0, len(n.Taints))
	for _, t := range n.Taints {
		taint, err := parseTaint(t)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		taints = append(taints, taint)
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: taints},
		Status:     corev1.NodeStatus{Capacity: capacity, Allocatable: capacity.DeepCopy()},
	}, nil
}

// parseTaint reads key=value:Effect or key:Effect.
func parseTaint(s string) (corev1.Taint, error) {
	kv, effect, ok := strings.Cut(s, ":")
	if !ok {
		return corev1.Taint{}, fmt.Errorf("taint %q: want key[=value]:Effect", s)
	}
	key, value, _ := strings.Cut(kv, "=")
	return corev1.Taint{Key: key, Value: value, Effect: corev1.TaintEffect(effect)}, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// ProcessNodeLogPath is where a process-node container's output goes.
func (e *Env) ProcessNodeLogPath(namespace, pod, container string) string {
	if e.procNode == nil {
		return ""
	}
	return e.procNode.LogPath(namespace, pod, container)
}
