package nodepool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/swell-autoscaler/swell/pkg/nodepool/agones"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider"
)

// Event reasons on Node objects.
const (
	ReasonCordoned   = "SwellCordoned"
	ReasonUncordoned = "SwellUncordoned"
	ReasonDeleting   = "SwellDeletingEmptyNode"
	ReasonResized    = "SwellResizedPool"
	// ReasonDraining: Swell evicts a node's remaining pods (Eviction API)
	// before deleting it.
	ReasonDraining = "SwellDrainingNode"
	// ReasonDeletionBlocked: a pod keeps the node from being deleted (a
	// server pod, a do-not-disrupt annotation, or a PodDisruptionBudget
	// that refused an eviction); the message names the pod and why.
	ReasonDeletionBlocked = "SwellDeletionBlocked"
)

// nodeIndex indexes pods by the node they are bound to ("" = unscheduled).
const nodeIndex = "spec.nodeName"

// providerRefresh bounds how stale the provider's count may get between
// actions; each action refreshes it at once.
const providerRefresh = 30 * time.Second

// DefaultDrainValidationDelay is how long a node chosen for deletion must
// stay clean (nothing but DaemonSet, mirror and finished pods, checked live)
// after Swell first looked at it or last evicted from it, before it is
// deleted: pods that were being bound or evicted have settled by then.
const DefaultDrainValidationDelay = 5 * time.Second

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
	// Cache is the node and pod cache to read; nil builds one for this
	// pool alone. A shared Cache must be started by its owner first.
	Cache *Cache
	// State carries the cooldown, in-flight deletions and drains over
	// from a previous Scaler of the same pool (a spec edit); nil starts
	// afresh.
	State *State
	// DrainValidationDelay overrides DefaultDrainValidationDelay.
	DrainValidationDelay time.Duration
	// Dynamic reads Agones GameServers; required when the config's
	// occupancy-source is agones, unused otherwise.
	Dynamic dynamic.Interface
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
	events   record.EventBroadcaster
	log      *slog.Logger
	metrics  *metrics
	servers  labels.Selector
	validate time.Duration

	cache    *Cache
	ownCache bool
	// gameServers is set when occupancy-source is agones.
	gameServers *gameServerWatch
	state       *State
	wake        chan struct{}

	mu           sync.Mutex
	last         Decision
	lastPending  int
	providerSize int
	providerAt   time.Time
	retrying     bool
}

// New wires the cache, the state and metrics; Run (or Start) starts them.
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
		servers: o.Config.ServerPodSelector(), validate: o.DrainValidationDelay,
		cache: o.Cache, state: o.State,
		wake: make(chan struct{}, 1),
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
	if o.Config.UsesAgones() {
		if o.Dynamic == nil {
			return nil, fmt.Errorf("nodepool: %s=%s needs a dynamic client to read GameServers", KeyOccupancySource, OccupancyAgones)
		}
		s.gameServers = newGameServerWatch(o.Dynamic)
	}
	if s.cache == nil {
		if s.cache, err = NewCache(s.client, s.cfg.NodeSelector); err != nil {
			return nil, err
		}
		s.ownCache = true
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
	if s.state == nil {
		s.state = NewState()
	}
	if s.validate <= 0 {
		s.validate = DefaultDrainValidationDelay
	}
	s.log = s.log.With("pool", s.pool)
	if s.recorder == nil {
		s.events = record.NewBroadcaster()
		s.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.client.CoreV1().Events("")})
		s.recorder = s.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "swell-nodepool"})
	}
}

// inPool reports whether a node belongs to this pool (a shared cache holds
// every node).
func (s *Scaler) inPool(n *corev1.Node) bool {
	return s.cfg.NodeSelector.Matches(labels.Set(n.Labels))
}

// nodeHandler wakes the loop when one of the pool's nodes changes in a way
// the plan sees (not on heartbeats).
func (s *Scaler) nodeHandler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if n, ok := obj.(*corev1.Node); ok && s.inPool(n) {
				s.Trigger()
			}
		},
		DeleteFunc: func(obj any) {
			if n, ok := unwrap(obj).(*corev1.Node); ok && s.inPool(n) {
				s.Trigger()
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Node)
			n, ok2 := newObj.(*corev1.Node)
			if !ok1 || !ok2 || (!s.inPool(o) && !s.inPool(n)) {
				return
			}
			if s.inPool(o) != s.inPool(n) || isReady(o) != isReady(n) || o.Spec.Unschedulable != n.Spec.Unschedulable ||
				o.Annotations[CordonedAtAnnotation] != n.Annotations[CordonedAtAnnotation] ||
				o.Annotations[EmptySinceAnnotation] != n.Annotations[EmptySinceAnnotation] ||
				(o.DeletionTimestamp == nil) != (n.DeletionTimestamp == nil) {
				s.Trigger()
			}
		},
	}
}

// podHandler wakes the loop at once when a pod that matters to this pool
// arrives, leaves, or is bound: a server pod waiting for a node, or any
// pod on one of the pool's nodes. A burst of servers is answered without
// waiting for a tick.
func (s *Scaler) podHandler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if p, ok := obj.(*corev1.Pod); ok && s.concerns(p) {
				s.Trigger()
			}
		},
		DeleteFunc: func(obj any) {
			if p, ok := unwrap(obj).(*corev1.Pod); ok && s.concerns(p) {
				s.Trigger()
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Pod)
			n, ok2 := newObj.(*corev1.Pod)
			if !ok1 || !ok2 || (o.Spec.NodeName == n.Spec.NodeName && finished(o) == finished(n)) {
				return
			}
			if s.concerns(o) || s.concerns(n) {
				s.Trigger()
			}
		},
	}
}

// concerns reports whether a pod change can change this pool's plan.
func (s *Scaler) concerns(p *corev1.Pod) bool {
	if p.Spec.NodeName == "" {
		return s.servers.Matches(labels.Set(p.Labels))
	}
	n, err := s.cache.nodes.Get(p.Spec.NodeName)
	return err == nil && s.inPool(n)
}

// unwrap returns the object inside a delete tombstone.
func unwrap(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
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

// Start runs the cache (when the Scaler owns it) until ctx ends, waits for
// it, and registers the Scaler's handlers; stop removes them (and shuts an
// owned cache down). Run calls it; a caller that drives passes itself (the
// NodePoolScaler controller) calls it instead of Run, then Pass.
func (s *Scaler) Start(ctx context.Context) (stop func(), err error) {
	stop = func() {}
	if s.ownCache {
		stop = s.cache.Shutdown
	}
	unregister, err := s.cache.register(s.nodeHandler(), s.podHandler())
	if err != nil {
		return stop, err
	}
	owned := stop
	stop = func() {
		unregister()
		owned()
	}
	if err := s.cache.Start(ctx); err != nil {
		return stop, fmt.Errorf("nodepool %s: %w", s.pool, err)
	}
	if s.gameServers != nil {
		if err := gameServersServed(s.client.Discovery()); err != nil {
			return stop, fmt.Errorf("nodepool %s: %s=%s: %w", s.pool, KeyOccupancySource, OccupancyAgones, err)
		}
		stopGS, err := s.gameServers.start(ctx, s.Trigger)
		prev := stop
		stop = func() {
			stopGS()
			prev()
		}
		if err != nil {
			return stop, fmt.Errorf("nodepool %s: %w", s.pool, err)
		}
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
	nodes, err := s.cache.nodes.List(s.cfg.NodeSelector)
	if err != nil {
		return Decision{}, fmt.Errorf("list cached nodes: %w", err)
	}
	in, byName, clocks := s.input(nodes)
	d := Plan(in)
	deleted, held, err := s.apply(ctx, d, byName, clocks)
	// The plan lists every expired node on each pass while it drains;
	// what the pass reports is what it deleted, and why the rest waits.
	d.Delete = deleted
	d.Notes = append(d.Notes, held...)
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
	return d, err
}

// input builds the plan's input from the caches, and the empty-since
// annotations the pass must write to keep the expiry clocks on the nodes.
func (s *Scaler) input(nodes []*corev1.Node) (Input, map[string]*corev1.Node, map[string]EmptySinceChange) {
	now := s.clock.Now()
	byName := make(map[string]*corev1.Node, len(nodes))
	clocks := map[string]EmptySinceChange{}
	states := make([]NodeState, 0, len(nodes))
	var games map[string][]agones.GameServer
	if s.gameServers != nil {
		games = byNode(s.gameServers.list())
	}
	for _, n := range nodes {
		byName[n.Name] = n
		var st NodeState
		if games != nil {
			st = AgonesNodeState(n, s.cache.podsOn(n.Name), games[n.Name])
		} else {
			st = NodeStateOf(n, s.cache.podsOn(n.Name), s.servers)
		}
		if s.state.isDeleting(n.Name) {
			st.Deleting = true
		}
		c := EmptySinceFor(n, st, now)
		if at, ok := s.state.pendingEmptySince(n); ok && c.Set {
			c = EmptySinceChange{Since: at} // our own write, not in the cache yet
		}
		if c.Set || c.Clear {
			clocks[n.Name] = c
		}
		if !c.Clear {
			st.EmptySince = c.Since
		}
		states = append(states, st)
	}
	s.state.forgetGone(byName)
	in := Input{
		Now: now, Nodes: states, PendingServerPods: s.pendingServers(nodes),
		Slot: s.cfg.Slot, Buffer: s.cfg.Buffer, Min: s.cfg.MinNodes, Max: s.cfg.MaxNodes,
		ProviderSize: s.providerSizeNow(), EmptyNodeExpiry: s.cfg.EmptyNodeExpiration, CooldownUntil: s.state.cooldown(),
	}
	if t, ok := s.provider.(provider.Templater); ok {
		in.Template = t.Template()
	} else {
		in.Template = templateOf(states, s.cfg.Slot)
	}
	return in, byName, clocks
}

func (s *Scaler) providerSizeNow() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.providerSize
}

// pendingServers counts server pods not bound to a node yet (and not
// being deleted) that could land on one of the pool's nodes
// ([PendingDemand]).
func (s *Scaler) pendingServers(pool []*corev1.Node) int {
	var pods []*corev1.Pod
	for _, p := range s.cache.podsOn("") {
		if p.DeletionTimestamp == nil && s.servers.Matches(labels.Set(p.Labels)) {
			pods = append(pods, p)
		}
	}
	return PendingDemand(pods, pool, s.cfg.NodeSelector)
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
// close, keep the expiry clocks, drain and delete, and grow. Each failure
// is reported; the rest still runs. It returns the nodes deleted, and
// notes on nodes whose deletion waits (a blocking pod, a drain under way).
func (s *Scaler) apply(ctx context.Context, d Decision, nodes map[string]*corev1.Node, clocks map[string]EmptySinceChange) (deleted, held []string, _ error) {
	var errs []error
	for _, name := range d.Uncordon {
		delete(clocks, name) // the uncordon clears both annotations
		s.state.wroteEmptySince(name, time.Time{})
		errs = append(errs, s.count("uncordon", 1, s.uncordon(ctx, name)))
	}
	for _, name := range d.Cordon {
		errs = append(errs, s.count("cordon", 1, s.cordon(ctx, name)))
	}
	for name, c := range clocks {
		errs = append(errs, s.writeEmptySince(ctx, nodes[name], c))
	}
	deleted, held, err := s.deleteNodes(ctx, d.Delete, nodes)
	if len(d.Delete) > 0 {
		errs = append(errs, s.count("delete", len(deleted), err))
	}
	if d.Resize > 0 {
		errs = append(errs, s.count("resize", 1, s.resize(ctx, d, nodes)))
	}
	if len(deleted) > 0 || d.Resize > 0 {
		if err := s.refreshProviderSize(ctx, true); err != nil {
			errs = append(errs, fmt.Errorf("provider size: %w", err))
		}
	}
	return deleted, held, errors.Join(errs...)
}

func (s *Scaler) count(action string, n int, err error) error {
	if err != nil {
		s.metrics.errors.WithLabelValues(s.pool, action).Inc()
		return err
	}
	if n > 0 {
		s.metrics.actions.WithLabelValues(s.pool, action).Add(float64(n))
	}
	return nil
}

// cordon closes a node to new servers. The node is read fresh: if it is
// already cordoned (by anyone) nothing is written, so Swell's annotations
// are never reset and others' cordons stay theirs. The patch carries the
// resourceVersion, so a concurrent change wins.
func (s *Scaler) cordon(ctx context.Context, name string) error {
	var node *corev1.Node
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		if node, err = s.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err != nil || node.Spec.Unschedulable {
			node = nil
			return err
		}
		at := s.clock.Now().UTC().Format(time.RFC3339Nano)
		return s.patchNode(ctx, node, map[string]any{CordonedAtAnnotation: at}, ptr.To(true))
	})
	if err != nil {
		return fmt.Errorf("cordon %s: %w", name, err)
	}
	if node == nil {
		return nil
	}
	s.recorder.Eventf(node, corev1.EventTypeNormal, ReasonCordoned, "Cordoned by Swell: surplus capacity for pool %s; deleted once it has been empty of server pods for %s and drained", s.pool, s.cfg.EmptyNodeExpiration)
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
		return s.patchNode(ctx, node, map[string]any{CordonedAtAnnotation: nil, EmptySinceAnnotation: nil}, ptr.To(false))
	})
	if err != nil {
		return fmt.Errorf("uncordon %s: %w", name, err)
	}
	if node == nil {
		return nil
	}
	s.state.forgetDrain(name)
	s.recorder.Eventf(node, corev1.EventTypeNormal, ReasonUncordoned, "Uncordoned by Swell: pool %s needs its slots", s.pool)
	s.log.Info("uncordoned node", "node", name)
	return nil
}

// writeEmptySince starts or stops a node's expiry clock on the node
// itself, so a restarted Swell counts from the same instant. The patch is
// guarded by the cached resourceVersion: if the node changed meanwhile,
// the next pass decides again from the newer state.
func (s *Scaler) writeEmptySince(ctx context.Context, node *corev1.Node, c EmptySinceChange) error {
	if node == nil {
		return nil
	}
	var v any
	if c.Set {
		v = c.Since.UTC().Format(time.RFC3339Nano)
	}
	err := s.patchNode(ctx, node, map[string]any{EmptySinceAnnotation: v}, nil)
	switch {
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("record %s on %s: %w", EmptySinceAnnotation, node.Name, err)
	}
	s.state.wroteEmptySince(node.Name, c.Since)
	if c.Set {
		s.log.Info("node empty of server pods", "node", node.Name, "since", v)
	} else {
		s.log.Info("node no longer empty, expiry clock stopped", "node", node.Name)
	}
	return nil
}

// patchNode sets Swell's annotations (a nil value removes one) and, when
// unschedulable is set, spec.unschedulable, in one merge patch guarded by
// the node's resourceVersion.
func (s *Scaler) patchNode(ctx context.Context, node *corev1.Node, annotations map[string]any, unschedulable *bool) error {
	patch := map[string]any{
		"metadata": map[string]any{"resourceVersion": node.ResourceVersion, "annotations": annotations},
	}
	if unschedulable != nil {
		patch["spec"] = map[string]any{"unschedulable": *unschedulable}
	}
	body, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	_, err = s.client.CoreV1().Nodes().Patch(ctx, node.Name, types.MergePatchType, body, metav1.PatchOptions{})
	return err
}

// deleteNodes moves each expired node toward deletion and deletes those
// that are ready: drained, and found clean by a live check (the API
// server, not the cache) at least the validation delay after Swell first
// looked at the node or last evicted from it. A node with a server pod, a
// pod that must not be disrupted, or a pod whose eviction a
// PodDisruptionBudget refused is skipped this pass. held says why nodes
// wait.
func (s *Scaler) deleteNodes(ctx context.Context, names []string, cached map[string]*corev1.Node) (deleted, held []string, _ error) {
	s.state.keepDrains(names)
	var chosen []*corev1.Node
	var errs []error
	for _, name := range names {
		node, note, err := s.drain(ctx, name)
		if err != nil {
			errs = append(errs, err)
		}
		if note != "" {
			held = append(held, note)
		}
		if node != nil {
			chosen = append(chosen, node)
		}
	}
	if len(chosen) == 0 {
		return nil, held, errors.Join(errs...)
	}
	now := s.clock.Now()
	for _, n := range chosen {
		s.state.markDeleting(n.Name, now)
		empty, _ := timeAnnotation(n, EmptySinceAnnotation)
		s.recorder.Eventf(n, corev1.EventTypeNormal, ReasonDeleting, "Deleting through %T: cordoned by Swell, empty of server pods for %s (expiry %s), drained, and clean at a live check %s after the last eviction",
			s.provider, now.Sub(empty).Round(time.Second), s.cfg.EmptyNodeExpiration, s.validate)
		s.log.Info("deleting empty node", "node", n.Name, "emptySince", n.Annotations[EmptySinceAnnotation])
	}
	if err := s.provider.Delete(ctx, chosen); err != nil {
		for _, n := range chosen {
			s.state.unmarkDeleting(n.Name)
		}
		return nil, held, errors.Join(append(errs, fmt.Errorf("delete nodes: %w", err))...)
	}
	for _, n := range chosen {
		deleted = append(deleted, n.Name)
	}
	return deleted, held, errors.Join(errs...)
}

// drain takes one step toward deleting a node and returns it (read live)
// when it may be deleted now. Each call lists the node's pods live:
// blockers leave the node alone; evictable pods are evicted (a
// PodDisruptionBudget refusal skips the node this pass); the node is
// returned only once a live check finds it clean and the validation delay
// has passed since the drain began or last evicted.
func (s *Scaler) drain(ctx context.Context, name string) (*corev1.Node, string, error) {
	node, err := s.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s.state.forgetDrain(name)
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("re-check node %s before deleting: %w", name, err)
	}
	if _, ok := node.Annotations[CordonedAtAnnotation]; !ok || !node.Spec.Unschedulable || node.DeletionTimestamp != nil {
		s.state.forgetDrain(name)
		return nil, "", nil
	}
	list, err := s.client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", name).String(),
	})
	if err != nil {
		return nil, "", fmt.Errorf("re-check pods on %s before deleting: %w", name, err)
	}
	pods := make([]*corev1.Pod, 0, len(list.Items))
	for i := range list.Items {
		if list.Items[i].Spec.NodeName == name { // the field selector did this; a fake client does not
			pods = append(pods, &list.Items[i])
		}
	}
	v := s.assessDrain(pods, name)
	now := s.clock.Now()
	if len(v.Blockers) > 0 {
		s.state.forgetDrain(name)
		return nil, s.blocked(node, v.Blockers), nil
	}
	began, first := s.state.beginDrain(name, now)
	if len(v.Evict) > 0 {
		s.state.restartDrain(name, now)
		s.retryAfter(s.validate)
		note, err := s.evict(ctx, node, v.Evict)
		return nil, note, err
	}
	if len(v.Terminating) > 0 {
		s.state.clearBlocked(name)
		s.state.restartDrain(name, now)
		s.retryAfter(s.validate)
		return nil, fmt.Sprintf("node %s: waiting for %s to terminate before deleting", name, strings.Join(v.Terminating, ", ")), nil
	}
	if wait := s.validate - now.Sub(began); first || wait > 0 {
		s.retryAfter(max(wait, time.Millisecond))
		return nil, fmt.Sprintf("node %s: drained; deleted after a live re-check at %s", name, began.Add(s.validate).UTC().Format("2006-01-02T15:04:05.000Z07:00")), nil
	}
	s.state.forgetDrain(name)
	s.state.clearBlocked(name)
	return node, "", nil
}

// assessDrain judges a node's live pods; with occupancy-source=agones the
// node's GameServers (from the informer) decide which of them block.
func (s *Scaler) assessDrain(pods []*corev1.Pod, node string) DrainVerdict {
	if s.gameServers == nil {
		return AssessDrain(pods, s.servers)
	}
	return AssessAgonesDrain(pods, s.servers, byNode(s.gameServers.list())[node])
}

// evict asks the Eviction API to move each pod, stopping at the first
// refusal: a node that cannot be drained now keeps its other pods.
func (s *Scaler) evict(ctx context.Context, node *corev1.Node, pods []*corev1.Pod) (string, error) {
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.Namespace + "/" + p.Name
	}
	s.recorder.Eventf(node, corev1.EventTypeNormal, ReasonDraining, "Evicting %s through the Eviction API before deleting the node (PodDisruptionBudgets apply)", strings.Join(names, ", "))
	for i, p := range pods {
		err := s.client.CoreV1().Pods(p.Namespace).EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}})
		if err == nil || apierrors.IsNotFound(err) {
			s.log.Info("evicted pod before deleting node", "node", node.Name, "pod", names[i])
			continue
		}
		if budget, ok := budgetRefusal(err); ok {
			return s.blocked(node, []Blocker{{Pod: names[i], Reason: "eviction refused by a PodDisruptionBudget: " + budget}}), nil
		}
		return "", fmt.Errorf("evict %s from %s: %w", names[i], node.Name, err)
	}
	s.state.clearBlocked(node.Name)
	return fmt.Sprintf("node %s: draining, evicted %s", node.Name, strings.Join(names, ", ")), nil
}

// budgetRefusal recognises the API server's answer to an eviction that
// would break a PodDisruptionBudget (429 with a DisruptionBudget cause,
// whose message names the budget).
func budgetRefusal(err error) (string, bool) {
	if !apierrors.IsTooManyRequests(err) {
		return "", false
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Details != nil {
		for _, c := range status.Status().Details.Causes {
			if c.Type == policyv1.DisruptionBudgetCause {
				return c.Message, true
			}
		}
	}
	return err.Error(), true
}

// blocked reports what keeps a node from being deleted: an event on the
// node when the reason changed since the last pass (the plan lists the
// node again every pass), and a note for the pool's status.
func (s *Scaler) blocked(node *corev1.Node, blockers []Blocker) string {
	parts := make([]string, len(blockers))
	for i, b := range blockers {
		parts[i] = b.String()
	}
	msg := "Not deleting this node now: " + strings.Join(parts, "; ")
	if s.state.noteBlocked(node.Name, msg) {
		s.recorder.Event(node, corev1.EventTypeWarning, ReasonDeletionBlocked, msg)
		s.log.Info("node deletion blocked", "node", node.Name, "by", strings.Join(parts, "; "))
	}
	return "node " + node.Name + " kept: " + strings.Join(parts, "; ")
}

// retryAfter asks for a pass once d has passed, so a drain moves on
// without waiting for the tick. One timer at a time.
func (s *Scaler) retryAfter(d time.Duration) {
	s.mu.Lock()
	if s.retrying {
		s.mu.Unlock()
		return
	}
	s.retrying = true
	s.mu.Unlock()
	t := s.clock.NewTimer(d)
	go func() {
		<-t.C()
		s.mu.Lock()
		s.retrying = false
		s.mu.Unlock()
		s.Trigger()
	}()
}

// resize grows the pool and starts the cooldown.
func (s *Scaler) resize(ctx context.Context, d Decision, nodes map[string]*corev1.Node) error {
	if err := s.provider.Resize(ctx, d.Resize); err != nil {
		return fmt.Errorf("resize pool %s from %d to %d: %w", s.pool, d.Size, d.Resize, err)
	}
	s.state.startCooldown(s.clock.Now().Add(s.cfg.ResizeCooldown))
	s.log.Info("resized pool", "from", d.Size, "to", d.Resize, "free", d.Free, "wanted", d.Wanted, "incoming", d.Incoming)
	for _, n := range nodes {
		// Events need an object and the pool has none outside the
		// cluster kind, so one of its nodes carries the resize event.
		s.recorder.Eventf(n, corev1.EventTypeNormal, ReasonResized, "Pool %s resized from %d to %d nodes (free %d, wanted %d)", s.pool, d.Size, d.Resize, d.Free, d.Wanted)
		break
	}
	return nil
}
