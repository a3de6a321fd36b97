package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"golang.org/x/time/rate"
	"k8s.io/client-go/rest"

	"github.com/swell-autoscaler/swell/pkg/cpa"
	"github.com/swell-autoscaler/swell/pkg/egress"
)

// cpaOptions are the flags of `swell cpa`.
type cpaOptions struct {
	config       string
	kubeconfig   string
	limits       kubeAPILimits
	metricsAddr  string
	probeAddr    string
	apiTokenFile string
	apiRate      float64
	apiBurst     int
	// egressRestrict puts http methods under the egress policy; off by
	// default because the operator, not a tenant, writes swell cpa's config.
	egressRestrict bool
	egressAllow    []string
	egressDeny     []string
}

// cpaAPITokenEnv holds the REST API's bearer token when no file is given
// (e.g. from a Secret through secretKeyRef). CPA's own keys never carry it,
// so config.yaml never holds a credential.
const cpaAPITokenEnv = "SWELL_CPA_API_TOKEN"

// newCPACmd is `swell cpa`: a Custom Pod Autoscaler base program that runs
// CPA's config.yaml, scripts and REST API unchanged.
func newCPACmd() *cobra.Command { return newCPACmdWith(&cpaOptions{}) }

// newCPACmdWith builds `swell cpa` filling o from its flags.
func newCPACmdWith(o *cpaOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cpa",
		Short: "Run a Custom Pod Autoscaler configuration (CPA-compatible)",
		Long: `cpa runs user logic (commands or HTTP calls) that gathers metrics and
evaluates a replica count, and scales any resource with a scale subresource.

It reads Custom Pod Autoscaler's config.yaml (--config, else $configPath,
else /config.yaml); every key can be overridden by an environment variable
named exactly like it. See docs/cpa.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCPA(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "CPA config file (default: $configPath, else /config.yaml)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else in-cluster)")
	o.limits.addFlags(f)
	f.StringVar(&o.metricsAddr, "metrics-bind-address", "127.0.0.1:8080", "address of /metrics (unauthenticated); 0 disables it")
	f.StringVar(&o.probeAddr, "health-probe-bind-address", "127.0.0.1:8081", "address of /healthz and /readyz; 0 disables it (use :8081 for kubelet httpGet probes)")
	f.StringVar(&o.apiTokenFile, "api-token-file", "", "file holding the bearer token the REST API requires (default: $"+cpaAPITokenEnv+"; none: no authentication)")
	f.Float64Var(&o.apiRate, "api-rate", 1, "REST API requests per second that may run user logic (metrics and evaluation); 0 removes the limit")
	f.IntVar(&o.apiBurst, "api-burst", 5, "REST API requests allowed at once above --api-rate")
	f.BoolVar(&o.egressRestrict, "egress-restrict", false, "http methods may not reach loopback, link-local, private ranges or the API server unless --egress-allow permits them")
	f.StringSliceVar(&o.egressAllow, "egress-allow", nil, "with --egress-restrict: destinations http methods may reach anyway: CIDR, address or host:port (repeatable)")
	f.StringSliceVar(&o.egressDeny, "egress-deny", nil, "with --egress-restrict: more CIDRs http methods may not reach (repeatable)")
	return cmd
}

// clientConfig is the Kubernetes client config with the flags' rate limits.
func (o *cpaOptions) clientConfig() (*rest.Config, error) {
	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return nil, err
	}
	if err := o.limits.apply(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// apiAccess reads the REST API's token (file first, else the environment)
// and rate limit.
func (o *cpaOptions) apiAccess(getenv func(string) string) (cpa.APIAccess, error) {
	if o.apiRate < 0 {
		return cpa.APIAccess{}, fmt.Errorf("--api-rate %g: must be >= 0", o.apiRate)
	}
	if o.apiBurst < 1 {
		return cpa.APIAccess{}, fmt.Errorf("--api-burst %d: must be >= 1", o.apiBurst)
	}
	access := cpa.APIAccess{Rate: rate.Limit(o.apiRate), Burst: o.apiBurst}
	token := getenv(cpaAPITokenEnv)
	if o.apiTokenFile != "" {
		if token != "" {
			return cpa.APIAccess{}, fmt.Errorf("--api-token-file and $%s are both set: use one", cpaAPITokenEnv)
		}
		b, err := os.ReadFile(o.apiTokenFile)
		if err != nil {
			return cpa.APIAccess{}, fmt.Errorf("--api-token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return cpa.APIAccess{}, fmt.Errorf("--api-token-file %s: file is empty", o.apiTokenFile)
		}
	}
	access.Token = strings.TrimSpace(token)
	return access, nil
}

// egressPolicy is the policy http methods dial under: none unless
// --egress-restrict, else the default refused ranges plus the flags, with
// apiServer (the kubeconfig's host) refused too.
func (o *cpaOptions) egressPolicy(ctx context.Context, apiServer string) (*egress.Policy, error) {
	if !o.egressRestrict {
		if len(o.egressAllow)+len(o.egressDeny) > 0 {
			return nil, errors.New("--egress-allow and --egress-deny need --egress-restrict")
		}
		return nil, nil
	}
	p, err := egress.New(ctx, egress.Config{Allow: o.egressAllow, Deny: o.egressDeny, APIServer: []string{apiServer}})
	if err != nil {
		return nil, fmt.Errorf("egress policy: %w", err)
	}
	return p, nil
}

func runCPA(ctx context.Context, o *cpaOptions) error {
	cfg, err := cpa.Load(o.config, os.LookupEnv)
	if err != nil {
		return err
	}
	access, err := o.apiAccess(os.Getenv)
	if err != nil {
		return err
	}
	log := cpaLogger(cfg.LogVerbosity)
	kcfg, err := o.clientConfig()
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	policy, err := o.egressPolicy(ctx, kcfg.Host)
	if err != nil {
		return err
	}
	a, stop, err := cpa.NewForCluster(kcfg, cfg, cpa.ClusterOptions{Registerer: reg, Logger: log, Egress: policy})
	if err != nil {
		return err
	}
	defer stop()
	defer serveMetrics(o.metricsAddr, reg, log)()
	defer serveHandler(o.probeAddr, a.HealthHandler(), log)()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	apiErr := make(chan error, 1)
	go func() { apiErr <- cpa.ServeAPI(ctx, *cfg.APIConfig, a.APIHandler(), access, log) }()
	log.Info("cpa started", "target", fmt.Sprintf("%s/%s %s", cfg.Namespace, cfg.ScaleTargetRef.Name, cfg.ScaleTargetRef.Kind), "interval_ms", cfg.Interval, "runMode", cfg.RunMode)
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()
	select {
	case err := <-apiErr:
		if err != nil {
			return err
		}
		return <-runErr
	case err := <-runErr:
		return err
	}
}

// cpaLogger maps CPA's logVerbosity (0 normal, 1+ verbose) onto slog levels.
func cpaLogger(verbosity int32) *slog.Logger {
	level := slog.LevelInfo
	if verbosity > 0 {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// serveHandler serves h on addr unless addr is "0" or empty; the returned
// func shuts the server down.
func serveHandler(addr string, h http.Handler, log *slog.Logger) func() {
	if addr == "" || addr == "0" {
		return func() {}
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("probe server stopped", "addr", addr, "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}
