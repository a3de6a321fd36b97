package nodepoolscaler

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/event"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/nodepool"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider"
)

// providerTimeout bounds building a provider (digitalocean resolves its
// cluster and pool by name), so a slow cloud cannot hold a worker.
const providerTimeout = 30 * time.Second

// runner is one NodePoolScaler's scaler, registered on the shared cache. It
// is kept across reconciles and rebuilt only when the spec or the token
// changes; the pool's State (cooldown, deletions in flight, drains) is kept
// apart in runners and handed to the rebuilt scaler, so an edit neither
// restarts the cooldown nor deletes a node twice.
type runner struct {
	scaler      *nodepool.Scaler
	health      *healthProvider
	tick        time.Duration
	fingerprint string
	stop        func()
	// publishOnly is the CapacityBuffer a cloudProvider none runner
	// publishes; such a runner has no scaler and no provider.
	publishOnly string
}

// runners holds the runner and the State of every NodePoolScaler this
// controller serves.
type runners struct {
	mu     sync.Mutex
	m      map[types.NamespacedName]*runner
	states map[types.NamespacedName]*nodepool.State
}

func newRunners() *runners {
	return &runners{m: map[types.NamespacedName]*runner{}, states: map[types.NamespacedName]*nodepool.State{}}
}

// state returns the pool's State, created on first use; it survives
// rebuilds of the runner and goes only with the object.
func (rs *runners) state(key types.NamespacedName) *nodepool.State {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	st := rs.states[key]
	if st == nil {
		st = nodepool.NewState()
		rs.states[key] = st
	}
	return st
}

func (rs *runners) get(key types.NamespacedName) *runner {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.m[key]
}

func (rs *runners) put(key types.NamespacedName, r *runner) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if old := rs.m[key]; old != nil {
		old.stop()
	}
	rs.m[key] = r
}

// remove stops and forgets a runner and its State (its object is gone).
func (rs *runners) remove(key types.NamespacedName) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if old := rs.m[key]; old != nil {
		old.stop()
		delete(rs.m, key)
	}
	delete(rs.states, key)
}

// fingerprint identifies what a runner was built from: a new generation,
// a rotated token or a changed cloud-init means a new runner. The secrets
// are hashed, never kept.
func fingerprint(generation int64, sec Secrets) string {
	h := sha256.New()
	h.Write([]byte(sec.Token))
	h.Write([]byte{0})
	h.Write(sec.CloudInit)
	return fmt.Sprintf("%d/%x", generation, h.Sum(nil))
}

// runnerBuilder makes runners; its fields are the reconciler's shared pieces.
type runnerBuilder struct {
	baseCtx   context.Context
	clientset kubernetes.Interface
	recorder  record.EventRecorder
	clock     clock.WithTicker
	wake      chan<- event.GenericEvent
	log       logr.Logger
	// cache is the one node and pod cache of every pool, started (with
	// baseCtx, so it lives as long as the manager) by the first build:
	// a controller with no NodePoolScaler watches no pods.
	cache *nodepool.Cache
	// drainValidation overrides the scaler's drain validation delay.
	drainValidation time.Duration
	// newProvider builds a pool's provider; nil means nodepool.NewProvider.
	// Tests put a stand-in cloud here to drive outages through the real
	// reconcile path.
	newProvider func(context.Context, nodepool.Config, kubernetes.Interface) (provider.Provider, error)
}

// build starts a runner for nps with cfg and the pool's state: provider,
// scaler on the shared cache, and a goroutine that turns the scaler's node
// and pod triggers into reconciles of nps.
func (b *runnerBuilder) build(ctx context.Context, nps *swellv1.NodePoolScaler, cfg nodepool.Config, print string, state *nodepool.State) (*runner, error) {
	key := types.NamespacedName{Namespace: nps.Namespace, Name: nps.Name}
	log := slog.New(logr.ToSlogHandler(b.log.WithValues("nodepoolscaler", key.String())))
	stopBuffer, err := b.startCapacityBuffer(cfg, log)
	if err != nil {
		return nil, err
	}
	if cfg.CloudProvider == nodepool.ProviderNone {
		return &runner{tick: cfg.Tick, fingerprint: print, stop: stopBuffer, publishOnly: cfg.CapacityBuffer}, nil
	}
	run, err := b.buildScaler(ctx, nps, cfg, print, state, log)
	if err != nil {
		stopBuffer()
		return nil, err
	}
	stopScaler := run.stop
	run.stop = func() { stopScaler(); stopBuffer() }
	return run, nil
}

// startCapacityBuffer publishes the pool's buffer as a CapacityBuffer when
// spec.capacityBuffer is set (a no-op stop otherwise). The publisher runs
// until the runner stops; a failed publish is logged and retried.
func (b *runnerBuilder) startCapacityBuffer(cfg nodepool.Config, log *slog.Logger) (stop func(), err error) {
	syncer, err := nodepool.NewCapacityBufferSyncer(cfg, b.clientset, log)
	if err != nil {
		return nil, fmt.Errorf("spec.capacityBuffer: %w", err)
	}
	if syncer == nil {
		return func() {}, nil
	}
	runCtx, cancel := context.WithCancel(b.baseCtx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := syncer.Run(runCtx); err != nil {
			log.Error("capacity buffer publisher stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// buildScaler builds the provider and the scaler of a pool Swell sizes.
func (b *runnerBuilder) buildScaler(ctx context.Context, nps *swellv1.NodePoolScaler, cfg nodepool.Config, print string, state *nodepool.State, log *slog.Logger) (*runner, error) {
	if err := b.cache.Start(b.baseCtx); err != nil {
		return nil, fmt.Errorf("start the node and pod cache: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	newProvider := b.newProvider
	if newProvider == nil {
		newProvider = nodepool.NewProvider
	}
	prov, err := newProvider(pctx, cfg, b.clientset)
	if err != nil {
		return nil, fmt.Errorf("build provider %s: %w", cfg.CloudProvider, err)
	}
	wrapped, health := withHealth(prov)
	key := types.NamespacedName{Namespace: nps.Namespace, Name: nps.Name}
	scaler, err := nodepool.New(nodepool.Options{
		Config: cfg, Client: b.clientset, Provider: wrapped, Pool: key.String(), Clock: b.clock,
		Recorder: &teeRecorder{inner: b.recorder, owner: nps.DeepCopy()},
		Logger:   log,
		Cache:    b.cache, State: state, DrainValidationDelay: b.drainValidation,
	})
	if err != nil {
		return nil, fmt.Errorf("build scaler: %w", err)
	}
	runCtx, stopRun := context.WithCancel(b.baseCtx)
	stopInformers, err := scaler.Start(runCtx)
	if err != nil {
		stopRun()
		stopInformers()
		return nil, fmt.Errorf("register on the cache: %w", err)
	}
	done := make(chan struct{})
	go b.forward(runCtx, scaler.Triggered(), key, done)
	stop := func() {
		stopRun()
		stopInformers()
		<-done
	}
	return &runner{scaler: scaler, health: health, tick: cfg.Tick, fingerprint: print, stop: stop}, nil
}

// forward enqueues the object on every trigger of its scaler, so a burst
// of server pods or a node turning Ready runs a pass at once.
func (b *runnerBuilder) forward(ctx context.Context, triggered <-chan struct{}, key types.NamespacedName, done chan<- struct{}) {
	defer close(done)
	obj := &swellv1.NodePoolScaler{}
	obj.Namespace, obj.Name = key.Namespace, key.Name
	for {
		select {
		case <-ctx.Done():
			return
		case <-triggered:
		}
		select {
		case <-ctx.Done():
			return
		case b.wake <- event.GenericEvent{Object: obj}:
		}
	}
}
