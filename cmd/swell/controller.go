package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
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
	limits      kubeAPILimits
	manager     controller.Options
	development bool
}

// clientConfig is the controller's Kubernetes client config with its flags'
// rate limits.
func (o *controllerOptions) clientConfig() (*rest.Config, error) {
	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return nil, err
	}
	if err := o.limits.apply(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func newControllerCmd() *cobra.Command { return newControllerCmdWith(&controllerOptions{}) }

// newControllerCmdWith builds `swell controller` filling o from its flags.
func newControllerCmdWith(o *controllerOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the in-cluster controller (QWorker, ScalerConfig)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctrl.SetLogger(zap.New(zap.UseDevMode(o.development)))
			cfg, err := o.clientConfig()
			if err != nil {
				return err
			}
			return runController(cmd.Context(), cfg, o.manager)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else in-cluster)")
	o.limits.addFlags(f)
	f.StringVar(&o.manager.MetricsAddr, "metrics-bind-address", "127.0.0.1:8080",
		"address of /metrics; 0 disables it. Off loopback, scrapers need a bearer token allowed to get /metrics (TokenReview + SubjectAccessReview)")
	f.BoolVar(&o.manager.MetricsSecure, "metrics-secure", false, "serve metrics over HTTPS (self-signed unless --metrics-cert-dir)")
	f.StringVar(&o.manager.MetricsCertDir, "metrics-cert-dir", "", "directory with tls.crt and tls.key for --metrics-secure")
	// kubelet's httpGet probes connect to the pod IP, so probes bind every
	// interface; they answer "ok" and nothing else.
	f.StringVar(&o.manager.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz (unauthenticated; kubelet probes the pod IP)")
	f.StringVar(&o.manager.PprofAddr, "pprof-bind-address", "", "address of Go's /debug/pprof profiles, e.g. 127.0.0.1:6060 (unauthenticated: bind to loopback); empty disables")
	f.BoolVar(&o.manager.LeaderElect, "leader-elect", false, "elect one active replica (run with several replicas)")
	f.DurationVar(&o.manager.LeaseDuration, "leader-elect-lease-duration", controller.DefaultLeaseDuration, "how long other replicas wait on an unrenewed lease before taking over (the failover time when a leader dies without releasing it)")
	f.DurationVar(&o.manager.RenewDeadline, "leader-elect-renew-deadline", controller.DefaultRenewDeadline, "how long the leader keeps trying to renew; once its last renewal is older it writes nothing, gives the lease up and campaigns again without exiting")
	f.DurationVar(&o.manager.RetryPeriod, "leader-elect-retry-period", controller.DefaultRetryPeriod, "how often replicas try to acquire or renew the lease")
	// The chart sets POD_NAMESPACE from the downward API; it also serves where
	// no in-cluster namespace file is mounted (e.g. Swell's process node).
	f.StringVar(&o.manager.LeaderElectionNamespace, "leader-election-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the leader lease (default: $POD_NAMESPACE, else the pod's)")
	f.StringSliceVar(&o.manager.Namespaces, "namespace", nil, "watch only these namespaces (repeatable; default all)")
	f.DurationVar(&o.manager.GracefulShutdown, "graceful-shutdown", 30*time.Second, "time reconcilers get to finish on SIGTERM")
	f.BoolVar(&o.development, "dev-logs", false, "human-readable logs instead of JSON")
	f.StringSliceVar(&o.manager.Egress.Allow, "egress-allow", nil, "destinations PodAutoscaler http methods and ScalerConfig brokers may reach although refused by default (loopback, link-local, the API server; private ranges for http methods, and for brokers with --egress-broker-private=false): CIDR, address or host:port (repeatable)")
	f.StringSliceVar(&o.manager.Egress.Deny, "egress-deny", nil, "more CIDRs PodAutoscaler http methods and ScalerConfig brokers may not reach, e.g. cluster networks on public addresses (repeatable)")
	f.Var(invertedBool{&o.manager.EgressBrokerStrict}, "egress-broker-private", "let ScalerConfig brokers reach the private ranges (RFC 1918, RFC 6598, IPv6 unique local) without --egress-allow, where in-cluster brokers live; false refuses them as for http methods")
	f.Lookup("egress-broker-private").NoOptDefVal = "true"
	f.BoolVar(&o.manager.RequireSecretAddresses, "require-secret-addresses", false, "refuse a Secret as ScalerConfig broker credentials unless it lists the broker addresses its values may be sent to in its swell.dev/allowed-addresses annotation (annotated Secrets are bound to their addresses either way)")
	f.BoolVar(&o.manager.PodAutoscalerFullResource, "podautoscaler-full-resource", false, "send PodAutoscaler methods whole targets and pods (default: identity, replicas, selector and status only)")
	f.StringVar(&o.manager.ShardRing, "shard-ring", "", "serve QWorkers, PodAutoscalers and ScalerConfigs as one member of this shard ring: every replica with the same ring name is active and serves its share, handed over through the shard.swell.dev/owner label (timed by the --leader-elect-* durations; excludes --leader-elect; needs --node-pools=false)")
	f.StringVar(&o.manager.ShardIdentity, "shard-identity", "", "this replica's name in the shard ring (default: the host name, i.e. the pod's name); unique per replica")
	f.BoolVar(&o.manager.NodePoolsOnly, "node-pools-only", false, "run only the NodePoolScaler reconciler (with --leader-elect, beside a --shard-ring controller that serves the other kinds)")
	nodePools := f.Bool("node-pools", true, "run the NodePoolScaler reconciler (needs permissions on nodes)")
	cmd.PreRun = func(*cobra.Command, []string) { o.manager.DisableNodePools = !*nodePools }
	return cmd
}

// invertedBool is a boolean flag that sets the negation of its value, for a
// flag whose default is true over an option whose zero value is false.
type invertedBool struct{ p *bool }

func (b invertedBool) String() string {
	if b.p == nil {
		return "true"
	}
	return strconv.FormatBool(!*b.p)
}

func (b invertedBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true or false: %w", err)
	}
	*b.p = !v
	return nil
}

func (b invertedBool) Type() string { return "bool" }

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
