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
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/swell-autoscaler/swell/internal/bindaddr"
	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// newNodePoolCmd is `swell nodepool`: kubescaler's job (a buffer of free
// server slots on a node pool) from kubescaler's own config file.
func newNodePoolCmd() *cobra.Command { return newNodePoolCmdWith(&nodePoolOptions{}) }

// nodePoolOptions are the flags of `swell nodepool`: --config, the API
// rate limits, and one --<key> flag per configuration key, as kubescaler
// offers them.
type nodePoolOptions struct {
	config string
	limits kubeAPILimits
	// keys holds the --<key> flags; only those given on the command line
	// are passed on, so an unset flag never hides the env or the file.
	keys map[string]*string
	// flags is the command's flag set, to tell given flags from defaults.
	flags *pflag.FlagSet
}

// defaultNodePoolConfig is the file kubescaler reads when no --config is
// given: config.yaml in the working directory.
const defaultNodePoolConfig = "config.yaml"

// newNodePoolCmdWith builds `swell nodepool` filling o from its flags.
func newNodePoolCmdWith(o *nodePoolOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nodepool",
		Short: "Keep a buffer of free server slots on a node pool (kubescaler-compatible)",
		Long: `nodepool keeps a buffer of free slots for dedicated servers on a node pool:
it cordons surplus nodes, uncordons them before growing the pool, and deletes
nodes it cordoned once they have been empty of server pods for the expiry,
after evicting their other pods through the Eviction API (PodDisruptionBudgets
and safe-to-evict, do-not-disrupt and do-not-evict annotations keep a node).

It reads kubescaler's keys as kubescaler does: from --<key> flags
(--buffer-slot-size 6), upper-snake-case environment variables
(BUFFER_SLOT_SIZE) and a YAML file (--config, else ./config.yaml if it
exists), in that order of precedence. Keys match without regard to case.
See docs/nodepool.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runNodePool(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.config, "config", "", "kubescaler-style config file (YAML); empty reads ./"+defaultNodePoolConfig+" if it exists, as kubescaler does")
	o.limits.addFlags(cmd.Flags())
	o.flags = cmd.Flags()
	o.keys = map[string]*string{}
	for _, k := range append(nodepool.Keys(), nodepool.CommandOnlyKeys()...) {
		o.keys[k] = cmd.Flags().String(k, "", fmt.Sprintf("config key %s (env %s); wins over the env and the file", k, nodepool.EnvName(k)))
	}
	// kubescaler's keys match without regard to case; so do these flags.
	cmd.Flags().SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		return pflag.NormalizedName(strings.ToLower(name))
	})
	return cmd
}

// sources are the configuration layers the options name: the --<key>
// flags given, the environment, and the file (--config, else kubescaler's
// ./config.yaml when it exists).
func (o *nodePoolOptions) sources(getenv func(string) string, exists func(string) bool) nodepool.Sources {
	src := nodepool.Sources{File: o.config, Getenv: getenv, Flags: map[string]string{}}
	if src.File == "" && exists(defaultNodePoolConfig) {
		src.File = defaultNodePoolConfig
	}
	for k, v := range o.keys {
		if o.flags != nil && o.flags.Changed(k) {
			src.Flags[k] = *v
		}
	}
	return src
}

// fileExists reports whether path names a regular file.
func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
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
	src := o.sources(os.Getenv, fileExists)
	cfg, err := nodepool.LoadSources(src)
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
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	log.Info("node-pool config read", "file", src.File, "flags", len(src.Flags))
	stopBuffer, err := startCapacityBuffer(ctx, cfg, client, log)
	if err != nil || cfg.CloudProvider == nodepool.ProviderNone {
		return errors.Join(err, stopBuffer())
	}
	defer func() { _ = stopBuffer() }()
	prov, err := nodepool.NewProvider(ctx, cfg, client)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	dyn, err := dynamic.NewForConfig(kcfg)
	if err != nil {
		return fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	s, err := nodepool.New(nodepool.Options{Config: cfg, Client: client, Dynamic: dyn, Provider: prov, Registerer: reg, Logger: log})
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
