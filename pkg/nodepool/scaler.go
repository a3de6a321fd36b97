package nodepool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider"
)

// Event reasons on Node objects.
const (
	ReasonCordoned   = "SwellCordoned"
	ReasonUncordoned = "SwellUncordoned"
	ReasonDeleting   = "SwellDeletingEmptyNode"
	ReasonResized    = "SwellResizedPool"
)

// nodeIndex indexes pods by the node they are bound to ("" = unscheduled).
const nodeIndex = "spec.nodeName"

// providerRefresh bounds how stale the provider's count may get between
// actions; each action refreshes it at once.
const providerRefresh = 30 * time.Second

// Options assemble a Scaler. Everything with side effects is injected.
type Options struct {
	Config   Config
	Client   kubernetes.Interface
	Provider provider.Provider
	// Pool names the pool in metrics, events and logs; defaults to
	// node-pool-name, else the node selector.
	Pool string
	// Clock drives ticks, cooldowns and expiry; nil is the real clock.
	Clock clock.WithTicker
	// Registerer receives the metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Recorder emits Kubernetes events; nil builds one on Client.
	Recorder record.EventRecorder
	Logger   *slog.Logger
}

// Scaler keeps the pool's buffer: informers feed it, Plan decides, and it
// carries out the decision. Run it once per pool.
type Scaler struct {
	cfg      Config
	client   kubernetes.Interface
	provider provider.Provider
	pool     string
	clock    clock.WithTicker
	recorder record.EventRecorder
	// events is the broadcaster New made for the default recorder; Run
	// shuts it down.
	events  record.EventBroadcaster
	log     *slog.Logger
	metrics *metrics
	servers labels.Selector

	nodes   listerscorev1.NodeLister
	pods    cache.Indexer
	factory []informers.SharedInformerFactory
	synced  []cache.InformerSynced
	wake    chan struct{}

	mu            sync.Mutex
	last          Decision
	lastPending   int
	cooldownUntil time.Time
	providerSize  int
	providerAt    time.Time
	deleting      map[string]time.Time
}

// New wires informers and metrics; Run starts them.
func New(o Options) (*Scaler, error) {
	if o.Client == nil || o.Provider == nil {
		return nil, errors.New("nodepool: a Kubernetes client and a provider are required")
	}
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	s := &Scaler{
		cfg: o.Config, client: o.Client, provider: o.Provider, pool: o.Pool,
		clock: o.Clock, recorder: o.Recorder, log: o.Logger,
		servers:  o.Config.ServerPodSelector(),
		wake:     make(chan struct{}, 1),
		deleting: map[string]time.Time{},
	}
	s.defaults()
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("nodepool: register metrics: %w", err)
	}
	s.metrics = m
	if err := s.informers(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Scaler) defaults() {
	if s.pool == "" {
		s.pool = s.cfg.NodePoolName
	}
	if s.pool == "" {
		s.pool = s.cfg.NodeSelector.String()
	}
	if s.clock == nil {
		s.clock = clock.RealClock{}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("pool", s.pool)
	if s.recorder == nil {
		s.events = record.NewBroadcaster()
		s.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.client.CoreV1().Events("")})
		s.recorder = s.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "swell-nodepool"})
	}
}

// informers watches the pool's nodes (by node-selector) and every pod
// that is not finished, indexed by node: slots are allocatable minus the
// requests of all pods still on a node, not only the servers.
func (s *Scaler) informers() error {
	nf := informers.NewSharedInformerFactoryWithOptions(s.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = s.cfg.NodeSelector.String()
	}))
	notFinished := fields.AndSelectors(
		fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
		fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)),
	).String()
	pf := informers.NewSharedInformerFactoryWithOptions(s.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = notFinished
	}))
	nodeInf := nf.Core().V1().Nodes()
	podInf := pf.Core().V1().Pods().Informer()
	if err := podInf.AddIndexers(cache.Indexers{nodeIndex: podNode}); err != nil {
		return fmt.Errorf("nodepool: pod index: %w", err)
	}
	if _, err := nodeInf.Informer().AddEventHandler(s.nodeHandler()); err != nil {
		return fmt.Errorf("nodepool: node handler: %w", err)
	}
	if _, err := podInf.AddEventHandler(s.podHandler()); err != nil {
		return fmt.Errorf("nodepool: pod handler: %w", err)
	}
	s.nodes, s.pods = nodeInf.Lister(), podInf.GetIndexer()
	s.factory = []informers.SharedInformerFactory{nf, pf}
	s.synced = []cache.InformerSynced{nodeInf.Informer().HasSynced, podInf.HasSynced}
	return nil
}

// podNode indexes a pod by its node name.
func podNode(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	return []string{p.Spec.NodeName}, nil
}

// nodeHandler wakes the loop when a node changes in a way the plan sees
// (not on heartbeats).
func (s *Scaler) nodeHandler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.Trigger() },
		DeleteFunc: func(any) { s.Trigger() },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Node)
			n, ok2 := newObj.(*corev1.Node)
			if !ok1 || !ok2 || isReady(o) != isReady(n) || o.Spec.Unschedulable != n.Spec.Unschedulable ||
				o.Annotations[CordonedAtAnnotation] != n.Annotations[CordonedAtAnnotation] || (o.DeletionTimestamp == nil) != (n.DeletionTimestamp == nil) {
				s.Trigger()
			}
		},
	}
}

// podHandler wakes the loop at once when a pod arrives, leaves, or is
// bound, so a burst of servers is answered without waiting for a tick.
func (s *Scaler) podHandler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.Trigger() },
		DeleteFunc: func(any) { s.Trigger() },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Pod)
			n, ok2 := newObj.(*corev1.Pod)
			if !ok1 || !ok2 || o.Spec.NodeName != n.Spec.NodeName || finished(o) != finished(n) {
				s.Trigger()
			}
		},
	}
}

// Triggered receives when a node or pod change calls for a pass. Run
// reads it; a caller that drives passes itself instead of Run reads it to
// schedule them.
func (s *Scaler) Triggered() <-chan struct{} { return s.wake }

// Trigger asks for a pass soon; many triggers before it runs make one.
func (s *Scaler) Trigger() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run starts the informers and runs passes on every trigger and tick
// until ctx ends. A failed pass is logged and retried on the next one.
func (s *Scaler) Run(ctx context.Context) error {
	stop, err := s.Start(ctx)
	defer stop()
	if s.events != nil {
		defer s.events.Shutdown()
	}
	if err != nil {
		return err
	}
	s.log.Info("node-pool scaler started", "selector", s.cfg.NodeSelector.String(), "servers", s.servers.String(),
		"min", s.cfg.MinNodes, "max", s.cfg.MaxNodes, "buffer", s.cfg.Buffer, "slot", s.cfg.Slot)
	ticker := s.clock.NewTicker(s.cfg.Tick)
	defer ticker.Stop()
	s.Trigger()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-ticker.C():
		}
		if _, err := s.Pass(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("node-pool pass failed", "err", err)
		}
	}
}

// Start runs the informers until ctx ends and waits for their caches;
// stop shuts them down. Run calls it; a caller that drives passes itself
// (the NodePoolScaler controller) calls it instead of Run, then Pass.
func (s *Scaler) Start(ctx context.Context) (stop func(), err error) {
	for _, f := range s.factory {
		f.Start(ctx.Done())
	}
	stop = func() {
		for _, f := range s.factory {
			f.Shutdown()
		}
	}
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return stop, fmt.Errorf("nodepool %s: caches did not sync: %w", s.pool, ctx.Err())
	}
	return stop, nil
}

// Last is the most recent decision, for status reporting.
func (s *Scaler) Last() Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Pass runs one decision pass over the cache and carries it out.
func (s *Scaler) Pass(ctx context.Context) (Decision, error) {
	start := s.clock.Now()
	defer func() { s.metrics.passes.WithLabelValues(s.pool).Observe(s.clock.Since(start).Seconds()) }()
	if err := s.refreshProviderSize(ctx, false); err != nil {
		s.log.Warn("provider size unknown, counting registered nodes only", "err", err)
	}
	nodes, err := s.nodes.List(labels.Everything())
	if err != nil {
		return Decision{}, fmt.Errorf("list cached nodes: %w", err)
	}
	in, byName := s.input(nodes)
	d := Plan(in)
	s.mu.Lock()
	prev := s.last.Notes
	s.last, s.lastPending = d, in.PendingServerPods
	s.mu.Unlock()
	s.metrics.observe(s.pool, d, in.PendingServerPods)
	if !slices.Equal(prev, d.Notes) {
		for _, n := range d.Notes {
			s.log.Info("node-pool note", "note", n)
		}
	}
	return d, s.apply(ctx, d, byName)
}

// input builds the plan's input from the caches.
func (s *Scaler) input(nodes []*corev1.Node) (Input, map[string]*corev1.Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	byName := make(map[string]*corev1.Node, len(nodes))
	states := make([]NodeState, 0, len(nodes))
	for _, n := range nodes {
		byName[n.Name] = n
		st := NodeStateOf(n, s.podsOn(n.Name), s.servers)
		if _, ok := s.deleting[n.Name]; ok {
			st.Deleting = true
		}
		states = append(states, st)
	}
	for name := range s.deleting {
		if byName[name] == nil {
			delete(s.deleting, name)
		}
	}
	in := Input{
		Now: now, Nodes: states, PendingServerPods: s.pendingServers(),
		Slot: s.cfg.Slot, Buffer: s.cfg.Buffer, Min: s.cfg.MinNodes, Max: s.cfg.MaxNodes,
		ProviderSize: s.providerSize, EmptyNodeExpiry: s.cfg.EmptyNodeExpiration, CooldownUntil: s.cooldownUntil,
	}
	if t, ok := s.provider.(provider.Templater); ok {
		in.Template = t.Template()
	} else {
		in.Template = templateOf(states, s.cfg.Slot)
	}
	return in, byName
}

func (s *Scaler) podsOn(node string) []*corev1.Pod {
	objs, _ := s.pods.ByIndex(nodeIndex, node)
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	return pods
}

// pendingServers counts server pods not bound to a node yet (and not
// being deleted).
func (s *Scaler) pendingServers() int {
	n := 0
	for _, p := range s.podsOn("") {
		if p.DeletionTimestamp == nil && s.servers.Matches(labels.Set(p.Labels)) {
			n++
		}
	}
	return n
}

// refreshProviderSize asks the provider for its count when forced (after
// an action) or when the cached value is stale.
func (s *Scaler) refreshProviderSize(ctx context.Context, force bool) error {
	s.mu.Lock()
	fresh := !force && !s.providerAt.IsZero() && s.clock.Since(s.providerAt) < providerRefresh
	s.mu.Unlock()
	if fresh {
		return nil
	}
	n, err := s.provider.Size(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.providerSize, s.providerAt = n, s.clock.Now()
	s.mu.Unlock()
	return nil
}

// apply carries out a decision: reopen first (cheapest capacity), then
// close, delete and grow. Each failure is reported; the rest still runs.
func (s *Scaler) apply(ctx context.Context, d Decision, nodes map[string]*corev1.Node) error {
	var errs []error
	for _, name := range d.Uncordon {
		errs = append(errs, s.count("uncordon", 1, s.uncordon(ctx, name)))
	}
	for _, name := range d.Cordon {
		errs = append(errs, s.count("cordon", 1, s.cordon(ctx, name)))
	}
	if len(d.Delete) > 0 {
		deleted, err := s.deleteNodes(ctx, d.Delete, nodes)
		errs = append(errs, s.count("delete", deleted, err))
	}
	if d.Resize > 0 {
		errs = append(errs, s.count("resize", 1, s.resize(ctx, d, nodes)))
	}
	if len(d.Delete) > 0 || d.Resize > 0 {
		if err := s.refreshProviderSize(ctx, true); err != nil {
			errs = append(errs, fmt.Errorf("provider size: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (s *Scaler) count(action string, n int, err error) error {
	if err != nil {
		s.metrics.errors.WithLabelValues(s.pool, action).Inc()
		return err
	}
	s.metrics.actions.WithLabelValues(s.pool, action).Add(float64(n))
	return nil
}

// cordon closes a node to new servers and starts its expiry clock. The
// node is read fresh: if it is already cordoned (by anyone) nothing is
// written, so the clock is never reset and others' cordons stay theirs.
// The patch carries the resourceVersion, so a concurrent change wins.
func (s *Scaler) cordon(ctx context.Context, name string) error {
	var node *corev1.Node
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		if node, err = s.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err != nil || node.Spec.Unschedulable {
			node = nil
			return err
		}
		at := s.clock.Now().UTC().Format(time.RFC3339Nano)
		return s.patchNode(ctx, node, true, &at)
	})
	if err != nil {
		return fmt.Errorf("cordon %s: %w", name, err)
	}
	if node == nil {
		return nil
	}
	s.recorder.Eventf(node, corev1.EventTypeNormal, ReasonCordoned, "Cordoned by Swell: surplus capacity for pool %s; deleted once no server pod is left and the cordon is %s old", s.pool, s.cfg.EmptyNodeExpiration)
	s.log.Info("cordoned node", "node", name)
	return nil
}

// uncordon reopens a node Swell cordoned and clears its expiry clock.
func (s *Scaler) uncordon(ctx context.Context, name string) error {
	var node *corev1.Node
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		if node, err = s.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err != nil {
			return err
		}
		if _, ok := node.Annotations[CordonedAtAnnotation]; !ok || !node.Spec.Unschedulable {
			node = nil
			return nil
		}
		return s.patchNode(ctx, node, false, nil)
	})
	if err != nil {
		return fmt.Errorf("uncordon %s: %w", name, err)
	}
	if node == nil {
		return nil
	}
	s.recorder.Eventf(node, corev1.EventTypeNormal, ReasonUncordoned, "Uncordoned by Swell: pool %s needs its slots", s.pool)
	s.log.Info("uncordoned node", "node", name)
	return nil
}

// patchNode sets spec.unschedulable and Swell's annotation (nil removes
// it) in one merge patch guarded by the node's resourceVersion.
func (s *Scaler) patchNode(ctx context.Context, node *corev1.Node, unschedulable bool, at *string) error {
	patch := map[string]any{
		"metadata": map[string]any{
			"resourceVersion": node.ResourceVersion,
			"annotations":     map[string]any{CordonedAtAnnotation: at},
		},
		"spec": map[string]any{"unschedulable": unschedulable},
	}
	body, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	_, err = s.client.CoreV1().Nodes().Patch(ctx, node.Name, types.MergePatchType, body, metav1.PatchOptions{})
	return err
}

// deleteNodes re-checks each node against the API server (not the cache)
// just before deleting: still cordoned by Swell, and no server pod bound
// to it. A node with a server pod is never deleted, even when the cache
// lags behind a pod that was just bound.
func (s *Scaler) deleteNodes(ctx context.Context, names []string, cached map[string]*corev1.Node) (int, error) {
	var chosen []*corev1.Node
	var errs []error
	for _, name := range names {
		ok, err := s.safeToDelete(ctx, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			chosen = append(chosen, cached[name])
		}
	}
	if len(chosen) == 0 {
		return 0, errors.Join(errs...)
	}
	s.mu.Lock()
	for _, n := range chosen {
		s.deleting[n.Name] = s.clock.Now()
	}
	s.mu.Unlock()
	for _, n := range chosen {
		s.recorder.Eventf(n, corev1.EventTypeNormal, ReasonDeleting, "Deleting through %T: cordoned by Swell at %s (expiry %s) and no server pod left", s.provider, n.Annotations[CordonedAtAnnotation], s.cfg.EmptyNodeExpiration)
		s.log.Info("deleting empty node", "node", n.Name, "cordonedAt", n.Annotations[CordonedAtAnnotation])
	}
	if err := s.provider.Delete(ctx, chosen); err != nil {
		s.mu.Lock()
		for _, n := range chosen {
			delete(s.deleting, n.Name)
		}
		s.mu.Unlock()
		return 0, errors.Join(append(errs, fmt.Errorf("delete nodes: %w", err))...)
	}
	return len(chosen), errors.Join(errs...)
}

func (s *Scaler) safeToDelete(ctx context.Context, name string) (bool, error) {
	node, err := s.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("re-check node %s before deleting: %w", name, err)
	}
	if _, ok := node.Annotations[CordonedAtAnnotation]; !ok || !node.Spec.Unschedulable {
		return false, nil
	}
	pods, err := s.client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", name).String(),
		LabelSelector: s.servers.String(),
	})
	if err != nil {
		return false, fmt.Errorf("re-check server pods on %s before deleting: %w", name, err)
	}
	for i := range pods.Items {
		if !finished(&pods.Items[i]) {
			s.log.Info("not deleting node: a server pod is bound to it", "node", name, "pod", pods.Items[i].Namespace+"/"+pods.Items[i].Name)
			return false, nil
		}
	}
	return true, nil
}

// resize grows the pool and starts the cooldown.
func (s *Scaler) resize(ctx context.Context, d Decision, nodes map[string]*corev1.Node) error {
	if err := s.provider.Resize(ctx, d.Resize); err != nil {
		return fmt.Errorf("resize pool %s from %d to %d: %w", s.pool, d.Size, d.Resize, err)
	}
	s.mu.Lock()
	s.cooldownUntil = s.clock.Now().Add(s.cfg.ResizeCooldown)
	s.mu.Unlock()
	s.log.Info("resized pool", "from", d.Size, "to", d.Resize, "free", d.Free, "wanted", d.Wanted, "incoming", d.Incoming)
	for _, n := range nodes {
		// Events need an object and the pool has none outside the
		// cluster kind, so one of its nodes carries the resize event.
		s.recorder.Eventf(n, corev1.EventTypeNormal, ReasonResized, "Pool %s resized from %d to %d nodes (free %d, wanted %d)", s.pool, d.Size, d.Resize, d.Free, d.Wanted)
		break
	}
	return nil
}
