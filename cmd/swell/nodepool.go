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
	"k8s.io/client-go/tools/clientcmd"

	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// newNodePoolCmd is `swell nodepool`: kubescaler's job (a buffer of free
// server slots on a node pool) from kubescaler's own config file.
func newNodePoolCmd() *cobra.Command {
	var configPath string
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
			return runNodePool(cmd.Context(), configPath)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "kubescaler-style config file (YAML); empty reads the environment only")
	return cmd
}

func runNodePool(ctx context.Context, configPath string) error {
	cfg, err := nodepool.Load(configPath, os.Getenv)
	if err != nil {
		return fmt.Errorf("node-pool config: %w", err)
	}
	rest, err := clientcmd.BuildConfigFromFlags(cfg.KubeMasterURL, cfg.KubeConfigPath)
	if err != nil {
		return fmt.Errorf("kubernetes client (%s / %s): %w", nodepool.KeyKubeMasterURL, nodepool.KeyKubeConfigPath, err)
	}
	rest.Timeout = 30 * time.Second
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	// Fail at start, with the address, rather than wait forever for caches
	// of a cluster that is not there.
	if _, err := client.Discovery().ServerVersion(); err != nil {
		return fmt.Errorf("kubernetes API server %s unreachable: %w", rest.Host, err)
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
