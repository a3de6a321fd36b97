package controller

import (
	"context"
	"errors"
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/swell-autoscaler/swell/internal/controller/leaderguard"
	"github.com/swell-autoscaler/swell/internal/controller/shard"
)

// sharding is a replica's membership of a shard ring and the guard its
// writes pass through.
type sharding struct {
	ring  *shard.Ring
	guard *leaderguard.Guard
}

// newSharding builds the ring of o.ShardRing on cfg (unguarded: renewals
// must go out while this replica's other writes are refused), or returns
// nil when sharding is off.
func newSharding(cfg *rest.Config, o Options) (*sharding, error) {
	if o.ShardRing == "" {
		return nil, nil
	}
	o = o.withDefaults()
	id := o.ShardIdentity
	if id == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("shard identity: %w", err)
		}
		id = host
	}
	ns, err := electionNamespace(o)
	if err != nil {
		return nil, err
	}
	guard, err := leaderguard.New(leaderguard.Options{
		MaxAge: o.RenewDeadline, Logger: ctrl.Log.WithName("shardguard"), Registerer: crmetrics.Registry,
	})
	if err != nil {
		return nil, err
	}
	ring, err := shard.NewRing(cfg, shard.RingOptions{
		Namespace: ns, Name: o.ShardRing, Identity: id,
		LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod,
		Renewed: guard.Renewed, Logger: ctrl.Log.WithName("shard"),
	})
	if err != nil {
		return nil, err
	}
	return &sharding{ring: ring, guard: guard}, nil
}

// validateRoles checks that the options give this replica one coherent
// role: everything, a shard of the queue kinds, or node pools only.
func validateRoles(o Options) error {
	switch {
	case o.NodePoolsOnly && o.DisableNodePools:
		return errors.New("--node-pools-only and --node-pools=false leave nothing to run")
	case o.NodePoolsOnly && o.ShardRing != "":
		return errors.New("--node-pools-only excludes --shard-ring: node pools run in a leader-elected controller (--leader-elect)")
	case o.ShardRing != "" && o.LeaderElect:
		return errors.New("--shard-ring and --leader-elect exclude each other: with a ring every replica is active")
	case o.ShardRing != "" && !o.DisableNodePools:
		return errors.New("--shard-ring serves QWorkers, PodAutoscalers and ScalerConfigs: pass --node-pools=false here and run NodePoolScalers in a leader-elected controller with --node-pools-only")
	}
	return nil
}

// config is cfg with every write refused while this replica's lease is
// stale.
func (s *sharding) config(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(s.guard.WrapTransport)
	return cfg
}

// shardedManager runs a manager while its replica is a member of the ring.
type shardedManager struct {
	ctrl.Manager
	ring  *shard.Ring
	guard *leaderguard.Guard
}

// Start runs the ring and the manager. The manager stops when ctx ends or
// when the ring lapses (then Start returns shard.ErrLapsed and the process
// exits, to come back with a fresh cache); the lease is released only after
// the manager's reconcilers have stopped, so no other replica acts on an
// object while this one still may.
func (m *shardedManager) Start(ctx context.Context) error {
	mctx, stopManager := context.WithCancel(ctx)
	defer stopManager()
	ringCtx, stopRing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRing()
	ringErr := make(chan error, 1)
	go func() {
		err := m.ring.Run(ringCtx)
		if err != nil {
			stopManager()
		}
		ringErr <- err
	}()
	err := m.Manager.Start(leaderguard.Into(mctx, m.guard))
	stopRing()
	if rerr := <-ringErr; rerr != nil {
		return rerr
	}
	return err
}
