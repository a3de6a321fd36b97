// Command swell-dev is Swell's local demo: it starts a real cluster on
// loopback (etcd, kube-apiserver, controller-manager, scheduler, kwok nodes, a
// process node), Redis and Swell's controller, creates a sample QWorker whose
// workers are real `swell demo-worker` processes, pushes load and draws a live
// view. It lives apart from the product binary `swell` because it links the
// test environment (internal/testenv, internal/procnode, kfake), which the
// controller image must not carry. `make demo` builds both and runs it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/swell-autoscaler/swell/internal/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "swell-dev:", err)
		os.Exit(1)
	}
}

// newRootCmd is the whole command: the demo has no subcommands.
func newRootCmd() *cobra.Command {
	o := demo.Options{}
	cmd := &cobra.Command{
		Use:   "swell-dev",
		Short: "Run the demo: a local cluster, Redis, the controller, a sample QWorker, load and a live view",
		Long: `swell-dev starts, on loopback, the same real components the tests use (etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, kwok nodes, a process
node whose pods run as local processes, Redis), runs Swell's controller, creates
a QWorker whose workers are real 'swell demo-worker' processes built on the Go
SDK, pushes tasks at a changing rate, and draws a live view of the scaling.
It writes a kubeconfig so kubectl works beside it; Ctrl-C stops everything.

Binaries come from 'make testbin-demo' (run by 'make demo').`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Worker == "" {
				bin, err := findSwell()
				if err != nil {
					return err
				}
				o.Worker = bin
			}
			o.Out = cmd.OutOrStdout()
			return demo.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Nodes, "nodes", 3, "number of kwok nodes")
	f.StringVar(&o.KubeconfigOut, "kubeconfig-out", filepath.Join(os.TempDir(), "swell-dev.kubeconfig"), "where to write the cluster's kubeconfig")
	f.StringVar(&o.Worker, "worker-binary", "", "swell binary the worker pods run (default: swell next to this binary, else on PATH)")
	f.DurationVar(&o.TaskTime, "task-time", 500*time.Millisecond, "how long each task takes a worker")
	f.Float64Var(&o.PhaseScale, "phase-scale", 1, "stretch (>1) or shrink (<1) the load schedule")
	f.DurationVar(&o.Refresh, "refresh", time.Second, "live view refresh period")
	return cmd
}

// findSwell locates the product binary the worker pods run: `make demo` puts
// it next to swell-dev in bin/, so that is tried first.
func findSwell() (string, error) {
	exe, err := os.Executable()
	if err == nil {
		next := filepath.Join(filepath.Dir(exe), "swell")
		if st, statErr := os.Stat(next); statErr == nil && !st.IsDir() {
			return next, nil
		}
	}
	bin, err := exec.LookPath("swell")
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", errors.New("no swell binary next to swell-dev or on PATH: run 'make build' or pass --worker-binary")
		}
		return "", fmt.Errorf("find the swell binary for the workers: %w", err)
	}
	return bin, nil
}
