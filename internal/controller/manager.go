// Package controller assembles Swell's in-cluster controller: one
// controller-runtime manager that runs one reconciler per kind (each in its
// own package below this one), with health probes, Prometheus metrics,
// leader election and graceful shutdown.
package controller

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/swell-autoscaler/swell/pkg/egress"
)

// Options configures the manager; the flags of `swell controller` fill it.
type Options struct {
	// MetricsAddr serves /metrics ("0" disables it).
	MetricsAddr string
	// MetricsSecure serves metrics over HTTPS with authn/authz, as
	// kubebuilder projects do; plain HTTP when false.
	MetricsSecure bool
	// ProbeAddr serves /healthz and /readyz.
	ProbeAddr string
	// LeaderElect makes replicas of the controller elect one active leader.
	LeaderElect bool
	// LeaderElectionNamespace holds the lease; defaults to the pod's namespace.
	LeaderElectionNamespace string
	// Namespaces restricts watches; empty watches every namespace.
	Namespaces []string
	// GracefulShutdown bounds how long reconcilers get to finish on SIGTERM.
	GracefulShutdown time.Duration
	// DisableNodePools leaves the NodePoolScaler reconciler out, so an
	// install without node pools needs no permission on nodes.
	DisableNodePools bool
	// Egress is the operator's policy for outbound calls users configure
	// (PodAutoscaler http methods): Allow and Deny of pkg/egress. The
	// API server of the manager's config is always refused unless allowed
	// exactly. There is no way to turn the policy off, only to allow.
	Egress egress.Config
	// PodAutoscalerFullResource sends PodAutoscaler methods whole targets
	// and pods instead of a view (identity, replicas, selector, status).
	PodAutoscalerFullResource bool
}

// Setup registers a reconciler with the manager. Each kind's package
// provides one; NewManager calls them in order.
type Setup func(ctx context.Context, mgr ctrl.Manager) error

// NewScheme returns the scheme with Kubernetes' built-in types plus the
// given API groups.
func NewScheme(addToScheme ...func(*runtime.Scheme) error) (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	for _, add := range addToScheme {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("register API types: %w", err)
		}
	}
	return s, nil
}

// NewManager builds the manager and registers every reconciler.
func NewManager(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, o Options, setups ...Setup) (ctrl.Manager, error) {
	cacheOpts := cache.Options{}
	if len(o.Namespaces) > 0 {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range o.Namespaces {
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	grace := o.GracefulShutdown
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         cacheOpts,
		Metrics:                       metricsserver.Options{BindAddress: o.MetricsAddr, SecureServing: o.MetricsSecure},
		HealthProbeBindAddress:        o.ProbeAddr,
		LeaderElection:                o.LeaderElect,
		LeaderElectionID:              "swell-controller.swell.dev",
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &grace,
	})
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add healthz: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add readyz: %w", err)
	}
	for _, setup := range setups {
		if err := setup(ctx, mgr); err != nil {
			return nil, err
		}
	}
	return mgr, nil
}
