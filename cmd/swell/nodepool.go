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
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/swell-autoscaler/swell/internal/bindaddr"
	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// newNodePoolCmd is `swell nodepool`: kubescaler's job (a buffer of free
// server slots on a node pool) from kubescaler's own config file.
func newNodePoolCmd() *cobra.Command { return newNodePoolCmdWith(&nodePoolOptions{}) }

// nodePoolOptions are the flags of `swell nodepool`; everything else comes
// from kubescaler's config keys.
type nodePoolOptions struct {
	config string
	limits kubeAPILimits
}

// newNodePoolCmdWith builds `swell nodepool` filling o from its flags.
func newNodePoolCmdWith(o *nodePoolOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nodepool",
		Short: "Keep a buffer of free server slots on a node pool (kubescaler-compatible)",
		Long: `nodepool keeps a buffer of free slots for dedicated servers on a node pool:
it cordons surplus nodes, uncordons them before growing the pool, and deletes
nodes it cordoned longer ago than the expiry once no server pod is left.

It reads kubescaler's keys from --config (YAML) and from upper-snake-case
environment variables (BUFFER_SLOT_SIZE overrides buffer-slot-size). See
docs/nodepool.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runNodePool(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.config, "config", "", "kubescaler-style config file (YAML); empty reads the environment only")
	o.limits.addFlags(cmd.Flags())
	return cmd
}

// clientConfig is the Kubernetes client config kubescaler's keys name,
// with the flags' rate limits.
func (o *nodePoolOptions) clientConfig(cfg nodepool.Config) (*rest.Config, error) {
	kcfg, err := clientcmd.BuildConfigFromFlags(cfg.KubeMasterURL, cfg.KubeConfigPath)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client (%s / %s): %w", nodepool.KeyKubeMasterURL, nodepool.KeyKubeConfigPath, err)
	}
	kcfg.Timeout = 30 * time.Second
	if err := o.limits.apply(kcfg); err != nil {
		return nil, err
	}
	return kcfg, nil
}

func runNodePool(ctx context.Context, o *nodePoolOptions) error {
	cfg, err := nodepool.Load(o.config, os.Getenv)
	if err != nil {
		return fmt.Errorf("node-pool config: %w", err)
	}
	kcfg, err := o.clientConfig(cfg)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(kcfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	// Fail at start, with the address, rather than wait forever for caches
	// of a cluster that is not there.
	if _, err := client.Discovery().ServerVersion(); err != nil {
		return fmt.Errorf("kubernetes API server %s unreachable: %w", kcfg.Host, err)
	}
	prov, err := nodepool.NewProvider(ctx, cfg, client)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	s, err := nodepool.New(nodepool.Options{Config: cfg, Client: client, Provider: prov, Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	stopMetrics := serveMetrics(cfg.MetricsBindAddress, reg, log)
	defer stopMetrics()
	return s.Run(ctx)
}

// serveMetrics serves /metrics and /healthz unless the address is "0" or
// empty; the returned func shuts the server down.
func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) func() {
	if addr == "" || addr == "0" {
		return func() {}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	// Metrics carry names and counts, no credentials; off loopback they are
	// served without authentication (a pod's Prometheus scrape), so say so.
	log.Info("metrics listening", "addr", addr, "loopbackOnly", bindaddr.IsLoopback(addr), "auth", false)
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "addr", addr, "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}
