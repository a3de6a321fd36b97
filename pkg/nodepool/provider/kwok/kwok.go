// Package kwok is a node-pool provider that adds and removes fake Node
// objects which kwok (sigs.k8s.io/kwok) turns Ready. It lets the node-pool
// scaler run end to end on a laptop or in tests, with the real scheduler
// placing real pods, and no cloud account.
package kwok

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// Annotation marks nodes kwok manages (its --manage-nodes-with-annotation-selector).
const Annotation = "kwok.x-k8s.io/node"

// Config describes the pool.
type Config struct {
	Client kubernetes.Interface
	// NamePrefix starts every node name ("<prefix>-<random>").
	NamePrefix string
	// Labels go on every node and select the pool's nodes; they are the
	// scaler's node-selector, so created nodes join the pool.
	Labels map[string]string
	// Capacity is each node's capacity and allocatable: "cpu", "memory",
	// "pods" quantities as written in the config ("4", "16Gi", "110").
	Capacity map[string]string
}

// Provider creates and deletes kwok nodes.
type Provider struct {
	client   kubernetes.Interface
	prefix   string
	labels   map[string]string
	capacity corev1.ResourceList
	template policy.Resources
}

// New checks the config and parses the capacity once.
func New(cfg Config) (*Provider, error) {
	if cfg.Client == nil {
		return nil, errors.New("kwok provider: a Kubernetes client is required")
	}
	if len(cfg.Labels) == 0 {
		return nil, errors.New("kwok provider: labels are required, or created nodes would not join the pool")
	}
	p := &Provider{client: cfg.Client, prefix: cfg.NamePrefix, labels: cfg.Labels, capacity: corev1.ResourceList{}, template: policy.Resources{}}
	if p.prefix == "" {
		p.prefix = "swell-kwok"
	}
	for name, v := range cfg.Capacity {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("kwok provider: node %s %q is not a quantity: %w", name, v, err)
		}
		p.capacity[corev1.ResourceName(name)] = q
		if name == "cpu" {
			p.template[name] = q.MilliValue()
		} else {
			p.template[name] = q.Value()
		}
	}
	return p, nil
}

// Template is the allocatable of a new node.
func (p *Provider) Template() policy.Resources {
	out := policy.Resources{}
	for k, v := range p.template {
		out[k] = v
	}
	return out
}

// Size counts the pool's nodes that are not being deleted.
func (p *Provider) Size(ctx context.Context) (int, error) {
	list, err := p.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(p.labels).String()})
	if err != nil {
		return 0, fmt.Errorf("kwok provider: list nodes: %w", err)
	}
	n := 0
	for _, node := range list.Items {
		if node.DeletionTimestamp == nil {
			n++
		}
	}
	return n, nil
}

// Resize creates nodes until the pool has n. It never deletes: shrinking
// is done by Delete on chosen nodes.
func (p *Provider) Resize(ctx context.Context, n int) error {
	cur, err := p.Size(ctx)
	if err != nil {
		return err
	}
	for i := cur; i < n; i++ {
		if err := p.create(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (p *Provider) create(ctx context.Context) error {
	name := p.prefix + "-" + utilrand.String(6)
	lbl := map[string]string{corev1.LabelHostname: name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64", "type": "kwok"}
	for k, v := range p.labels {
		lbl[k] = v
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl, Annotations: map[string]string{Annotation: "fake"}},
		Status:     corev1.NodeStatus{Capacity: p.capacity.DeepCopy(), Allocatable: p.capacity.DeepCopy()},
	}
	if _, err := p.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kwok provider: create node %s: %w", name, err)
	}
	return nil
}

// Delete deletes the Node objects; a node already gone is not an error.
func (p *Provider) Delete(ctx context.Context, nodes []*corev1.Node) error {
	var errs []error
	for _, n := range nodes {
		err := p.client.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("kwok provider: delete node %s: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}
