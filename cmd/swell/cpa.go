package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/swell-autoscaler/swell/pkg/cpa"
)

// cpaOptions are the flags of `swell cpa`.
type cpaOptions struct {
	config      string
	kubeconfig  string
	metricsAddr string
	probeAddr   string
}

// newCPACmd is `swell cpa`: a Custom Pod Autoscaler base program that runs
// CPA's config.yaml, scripts and REST API unchanged.
func newCPACmd() *cobra.Command {
	o := cpaOptions{}
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
	f.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "address of /metrics; 0 disables it")
	f.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz; 0 disables it")
	return cmd
}

func runCPA(ctx context.Context, o cpaOptions) error {
	cfg, err := cpa.Load(o.config, os.LookupEnv)
	if err != nil {
		return err
	}
	log := cpaLogger(cfg.LogVerbosity)
	rest, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a, stop, err := cpa.NewForCluster(rest, cfg, cpa.ClusterOptions{Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	defer stop()
	defer serveMetrics(o.metricsAddr, reg, log)()
	defer serveHandler(o.probeAddr, a.HealthHandler(), log)()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	apiErr := make(chan error, 1)
	go func() { apiErr <- cpa.ServeAPI(ctx, *cfg.APIConfig, a.APIHandler(), log) }()
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
