package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/swell-autoscaler/swell/internal/controller"
)

// controllerOptions are the flags of `swell controller`.
type controllerOptions struct {
	kubeconfig  string
	manager     controller.Options
	development bool
}

func newControllerCmd() *cobra.Command {
	o := controllerOptions{}
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the in-cluster controller (QWorker, ScalerConfig)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctrl.SetLogger(zap.New(zap.UseDevMode(o.development)))
			cfg, err := restConfig(o.kubeconfig)
			if err != nil {
				return err
			}
			return runController(cmd.Context(), cfg, o.manager)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else in-cluster)")
	f.StringVar(&o.manager.MetricsAddr, "metrics-bind-address", ":8080", "address of /metrics; 0 disables it")
	f.BoolVar(&o.manager.MetricsSecure, "metrics-secure", false, "serve metrics over HTTPS with Kubernetes authn/authz")
	f.StringVar(&o.manager.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	f.BoolVar(&o.manager.LeaderElect, "leader-elect", false, "elect one active replica (run with several replicas)")
	// The chart sets POD_NAMESPACE from the downward API; it also serves where
	// no in-cluster namespace file is mounted (e.g. Swell's process node).
	f.StringVar(&o.manager.LeaderElectionNamespace, "leader-election-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the leader lease (default: $POD_NAMESPACE, else the pod's)")
	f.StringSliceVar(&o.manager.Namespaces, "namespace", nil, "watch only these namespaces (repeatable; default all)")
	f.DurationVar(&o.manager.GracefulShutdown, "graceful-shutdown", 30*time.Second, "time reconcilers get to finish on SIGTERM")
	f.BoolVar(&o.development, "dev-logs", false, "human-readable logs instead of JSON")
	f.StringSliceVar(&o.manager.Egress.Allow, "egress-allow", nil, "destinations PodAutoscaler http methods may reach although refused by default (loopback, link-local, private ranges, the API server): CIDR, address or host:port (repeatable)")
	f.StringSliceVar(&o.manager.Egress.Deny, "egress-deny", nil, "more CIDRs PodAutoscaler http methods may not reach, e.g. cluster networks on public addresses (repeatable)")
	f.BoolVar(&o.manager.PodAutoscalerFullResource, "podautoscaler-full-resource", false, "send PodAutoscaler methods whole targets and pods (default: identity, replicas, selector and status only)")
	nodePools := f.Bool("node-pools", true, "run the NodePoolScaler reconciler (needs permissions on nodes)")
	cmd.PreRun = func(*cobra.Command, []string) { o.manager.DisableNodePools = !*nodePools }
	return cmd
}

// runController runs the manager with every reconciler until ctx ends.
func runController(ctx context.Context, cfg *rest.Config, o controller.Options) error {
	mgr, err := controller.New(ctx, cfg, o)
	if err != nil {
		return err
	}
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	return nil
}

// restConfig loads a kubeconfig file, else $KUBECONFIG, else in-cluster.
func restConfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	return cfg, nil
}
