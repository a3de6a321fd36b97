package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/swell-autoscaler/swell/internal/demo"
)

func newDevCmd() *cobra.Command {
	o := demo.Options{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the demo: a local cluster, Redis, the controller, a sample QWorker, load and a live view",
		Long: `dev starts, on loopback, the same real components the tests use (etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, kwok nodes, a process
node whose pods run as local processes, Redis), runs Swell's controller, creates
a QWorker whose workers are real 'swell demo-worker' processes built on the Go
SDK, pushes tasks at a changing rate, and draws a live view of the scaling.
It writes a kubeconfig so kubectl works beside it; Ctrl-C stops everything.

Binaries come from 'make testbin'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Worker == "" {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("find the swell binary for the workers: %w", err)
				}
				o.Worker = exe
			}
			o.Out = cmd.OutOrStdout()
			return demo.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Nodes, "nodes", 3, "number of kwok nodes")
	f.StringVar(&o.KubeconfigOut, "kubeconfig-out", filepath.Join(os.TempDir(), "swell-dev.kubeconfig"), "where to write the cluster's kubeconfig")
	f.StringVar(&o.Worker, "worker-binary", "", "swell binary the worker pods run (default: this one)")
	f.DurationVar(&o.TaskTime, "task-time", 500*time.Millisecond, "how long each task takes a worker")
	f.Float64Var(&o.PhaseScale, "phase-scale", 1, "stretch (>1) or shrink (<1) the load schedule")
	f.DurationVar(&o.Refresh, "refresh", time.Second, "live view refresh period")
	return cmd
}
