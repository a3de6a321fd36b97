package nodepool

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Cache is the node and pod informers Scalers read their snapshots from.
// One Cache serves any number of Scalers: the NodePoolScaler controller
// shares one across all its pools, so N pools cost one node watch and one
// pod watch, not N of each. `swell nodepool` builds one for its single pool
// with the pool's node selector.
type Cache struct {
	factories []informers.SharedInformerFactory
	nodeInf   cache.SharedIndexInformer
	podInf    cache.SharedIndexInformer
	nodes     listerscorev1.NodeLister
	pods      cache.Indexer

	once    sync.Once
	started chan struct{}
	err     error
}

// NewCache builds the informers: nodes matching nodeSelector (nil or
// Everything for a cache shared by pools with different selectors), and
// every pod that is not finished, indexed by node. Start runs them.
func NewCache(client kubernetes.Interface, nodeSelector labels.Selector) (*Cache, error) {
	var nodeOpts []informers.SharedInformerOption
	if nodeSelector != nil && !nodeSelector.Empty() {
		sel := nodeSelector.String()
		nodeOpts = append(nodeOpts, informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel }))
	}
	nf := informers.NewSharedInformerFactoryWithOptions(client, 0, nodeOpts...)
	notFinished := fields.AndSelectors(
		fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
		fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)),
	).String()
	pf := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = notFinished
	}))
	nodeInf := nf.Core().V1().Nodes()
	podInf := pf.Core().V1().Pods().Informer()
	if err := podInf.AddIndexers(cache.Indexers{nodeIndex: podNode}); err != nil {
		return nil, fmt.Errorf("nodepool: pod index: %w", err)
	}
	return &Cache{
		factories: []informers.SharedInformerFactory{nf, pf},
		nodeInf:   nodeInf.Informer(), podInf: podInf,
		nodes: nodeInf.Lister(), pods: podInf.GetIndexer(),
		started: make(chan struct{}),
	}, nil
}

// Start runs the informers until ctx ends and waits for their first list.
// Later calls wait for the first one's outcome.
func (c *Cache) Start(ctx context.Context) error {
	c.once.Do(func() {
		defer close(c.started)
		for _, f := range c.factories {
			f.Start(ctx.Done())
		}
		if !cache.WaitForCacheSync(ctx.Done(), c.nodeInf.HasSynced, c.podInf.HasSynced) {
			c.err = fmt.Errorf("nodepool: node and pod caches did not sync: %w", ctx.Err())
		}
	})
	select {
	case <-c.started:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown stops the informers once their context has ended.
func (c *Cache) Shutdown() {
	for _, f := range c.factories {
		f.Shutdown()
	}
}

// register adds one Scaler's handlers; the returned function removes them.
func (c *Cache) register(nodes, pods cache.ResourceEventHandler) (func(), error) {
	nreg, err := c.nodeInf.AddEventHandler(nodes)
	if err != nil {
		return nil, fmt.Errorf("nodepool: node handler: %w", err)
	}
	preg, err := c.podInf.AddEventHandler(pods)
	if err != nil {
		_ = c.nodeInf.RemoveEventHandler(nreg)
		return nil, fmt.Errorf("nodepool: pod handler: %w", err)
	}
	return func() {
		_ = c.nodeInf.RemoveEventHandler(nreg)
		_ = c.podInf.RemoveEventHandler(preg)
	}, nil
}

// podsOn lists the cached pods bound to node ("" = not scheduled yet).
func (c *Cache) podsOn(node string) []*corev1.Pod {
	objs, _ := c.pods.ByIndex(nodeIndex, node)
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	return pods
}

// podNode indexes a pod by its node name.
func podNode(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	return []string{p.Spec.NodeName}, nil
}
