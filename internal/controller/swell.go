package controller

import (
	"context"
	"fmt"

	"k8s.io/client-go/rest"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
	ctrl "sigs.k8s.io/controller-runtime"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/brokersource"
	"github.com/swell-autoscaler/swell/internal/controller/nodepoolscaler"
	"github.com/swell-autoscaler/swell/internal/controller/podautoscaler"
	"github.com/swell-autoscaler/swell/internal/controller/qworker"
	"github.com/swell-autoscaler/swell/internal/controller/scalerconfig"
	"github.com/swell-autoscaler/swell/internal/controller/shard"
	"github.com/swell-autoscaler/swell/pkg/egress"
	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
)

// New builds Swell's manager with every reconciler: QWorker, ScalerConfig
// and PodAutoscaler (sharing one set of broker connections), and
// NodePoolScaler unless disabled. `swell controller`, `swell-dev` and the
// e2e tests all run this same assembly.
func New(ctx context.Context, cfg *rest.Config, o Options) (ctrl.Manager, error) {
	if err := validateRoles(o); err != nil {
		return nil, err
	}
	scheme, err := NewScheme(qv1.AddToScheme, swellv1.AddToScheme)
	if err != nil {
		return nil, err
	}
	metrics, err := qworker.NewMetrics(crmetrics.Registry)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	ecfg := o.Egress
	ecfg.APIServer = append(append([]string(nil), ecfg.APIServer...), cfg.Host)
	policy, err := egress.New(ctx, ecfg)
	if err != nil {
		return nil, fmt.Errorf("egress policy: %w", err)
	}
	brokerPolicy, err := egress.New(ctx, brokerEgress(ecfg, o.EgressBrokerStrict))
	if err != nil {
		return nil, fmt.Errorf("broker egress policy: %w", err)
	}
	sh, err := newSharding(cfg, o)
	if err != nil {
		return nil, err
	}
	var ring shard.Membership // an interface: nil when not sharded
	if sh != nil {
		cfg, ring = sh.config(cfg), sh.ring
	}
	var sources *brokersource.Sources
	setups := []Setup{
		func(ctx context.Context, mgr ctrl.Manager) error {
			sources = brokersource.NewSources(mgr.GetClient(), brokersource.NewSecretCache(mgr.GetAPIReader(), 0, nil))
			sources.Dial = brokerconn.DialFunc(brokerPolicy.Dialer(nil))
			sources.RequireSecretAddresses = o.RequireSecretAddresses
			// ctx ends with this term as leader; the next term dials anew.
			go func(s *brokersource.Sources) { <-ctx.Done(); s.Close() }(sources)
			mc, err := metricsclient.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("metrics.k8s.io client: %w", err)
			}
			return qworker.Setup(ctx, mgr, qworker.Options{Sources: sources, Metrics: metrics, PodMetrics: qworker.MetricsAPI{Client: mc}, Shard: ring})
		},
		func(_ context.Context, mgr ctrl.Manager) error {
			return scalerconfig.Setup(mgr, sources, 0, ring)
		},
		func(ctx context.Context, mgr ctrl.Manager) error {
			return podautoscaler.Setup(ctx, mgr, podautoscaler.Options{Sources: sources, Egress: policy, FullResource: o.PodAutoscalerFullResource, Shard: ring})
		},
	}
	nodePools := func(ctx context.Context, mgr ctrl.Manager) error {
		return nodepoolscaler.Setup(ctx, mgr, nodepoolscaler.Options{})
	}
	switch {
	case o.NodePoolsOnly:
		setups = []Setup{nodePools}
	case !o.DisableNodePools:
		setups = append(setups, nodePools)
	}
	mgr, err := NewManager(ctx, cfg, scheme, o, setups...)
	if err != nil || sh == nil {
		return mgr, err
	}
	return &shardedManager{Manager: mgr, ring: sh.ring, guard: sh.guard}, nil
}

// brokerEgress is the policy configuration of ScalerConfig broker
// connections: ecfg (the http methods' policy) with the private ranges
// open, since brokers usually live inside the cluster, unless strict.
// Loopback, link-local (cloud metadata), the API server and the deny list
// stay refused either way.
func brokerEgress(ecfg egress.Config, strict bool) egress.Config {
	bcfg := ecfg
	bcfg.AllowPrivate = !strict
	return bcfg
}
