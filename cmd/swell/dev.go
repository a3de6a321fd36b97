package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/swell-autoscaler/swell/internal/testenv"
)

// devOptions are the flags of `swell dev`.
type devOptions struct {
	nodes      int
	kubeconfig string
}

func newDevCmd() *cobra.Command {
	o := devOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local cluster (real control plane, kwok nodes, a process node, Redis) until Ctrl-C",
		Long: `dev starts, on loopback, the same real components the tests use: etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, kwok fake nodes, a
process node whose pods run as local processes, and Redis. It writes a
kubeconfig so kubectl works beside it, and stops everything on Ctrl-C.

Binaries come from 'make testbin'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().IntVar(&o.nodes, "nodes", 3, "number of kwok nodes")
	cmd.Flags().StringVar(&o.kubeconfig, "kubeconfig-out", filepath.Join(os.TempDir(), "swell-dev.kubeconfig"), "where to write the cluster's kubeconfig")
	return cmd
}

func runDev(ctx context.Context, out io.Writer, o devOptions) error {
	if err := testenv.CheckBinaries(); err != nil {
		return err
	}
	opts := testenv.FullCluster(o.nodes)
	opts.Redis = true
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	start := time.Now()
	env, err := testenv.Start(startCtx, opts)
	if err != nil {
		return fmt.Errorf("start local cluster: %w", err)
	}
	defer env.Stop()
	kc, err := os.ReadFile(env.Kubeconfig)
	if err != nil {
		return fmt.Errorf("read kubeconfig: %w", err)
	}
	if err := os.WriteFile(o.kubeconfig, kc, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", o.kubeconfig, err)
	}
	fmt.Fprintf(out, "swell dev: cluster ready in %s\n", time.Since(start).Round(time.Millisecond))
	printTimings(out, env.Timings)
	fmt.Fprintf(out, "  apiserver   %s\n  redis       %s\n  logs        %s\n", env.APIServerURL, env.RedisAddr, env.Dir)
	fmt.Fprintf(out, "\n  export KUBECONFIG=%s\n  kubectl get nodes\n\nPress Ctrl-C to stop.\n", o.kubeconfig)
	<-ctx.Done()
	fmt.Fprintln(out, "swell dev: stopping")
	return nil
}

func printTimings(out io.Writer, t map[string]time.Duration) {
	names := make([]string, 0, len(t))
	for n := range t {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(out, "  %-24s ready in %s\n", n, t[n].Round(time.Millisecond))
	}
}
