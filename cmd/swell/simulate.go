package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/swell-autoscaler/swell/pkg/sim"
)

// simulateOptions are the flags of `swell simulate`.
type simulateOptions struct {
	scenarios    []string
	policies     []string
	seed         uint64
	csvPath      string
	htmlPath     string
	frontierPath string
	sweep        bool
}

// newSimulateCmd builds `swell simulate`, which replays scenario files
// through every scaling policy and reports cost and wait per policy.
func newSimulateCmd() *cobra.Command {
	opts := simulateOptions{}
	cmd := &cobra.Command{
		Use:   "simulate --scenario FILE|DIR [--policies swell,swell-wait,keda,hpa-cpu,oracle] [--seed N] [--sweep=false] [--csv FILE] [--frontier-csv FILE] [--html FILE]",
		Short: "Simulate scaling policies on a workload and compare pod-hours at equal task wait",
		Long: `simulate runs a discrete-event simulation of queue workers under the swell (a QWorker
with default settings), swell-wait (a QWorker with targetWaitSeconds), keda, hpa-cpu
and oracle policies, all deciding through Swell's policy code.

By default it sweeps each policy's main knob (keda: listLength 1-20, pollingInterval
15/30s, cooldownPeriod 60/300s; swell: scalingFactor; swell-wait: targetWaitSeconds;
hpa-cpu: target utilisation), keeps each policy's Pareto frontier of pod-hours against
p95 wait, and prints every policy's pod-hours at the p95 wait keda reaches on its
defaults, with the oracle as the lower bound. It then prints the runs on default
settings. --sweep=false prints only those.

--scenario may repeat and may name a directory: every .yaml/.yml/.json file in it
is run, so "--scenario examples/sim" runs all shipped scenarios into one report.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSimulate(cmd, opts)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&opts.scenarios, "scenario", nil, "scenario file or directory of scenario files (repeatable)")
	f.StringSliceVar(&opts.policies, "policies", sim.AllPolicies, "policies to compare, comma-separated")
	f.Uint64Var(&opts.seed, "seed", 0, "random seed overriding each scenario's seed")
	f.StringVar(&opts.csvPath, "csv", "", "write results as CSV to this file")
	f.StringVar(&opts.htmlPath, "html", "", "write a self-contained HTML report to this file")
	f.StringVar(&opts.frontierPath, "frontier-csv", "", "write every swept run (and whether it is on its frontier) as CSV to this file")
	f.BoolVar(&opts.sweep, "sweep", true, "sweep each policy's knob and compare pod-hours at equal p95 wait")
	_ = cmd.MarkFlagRequired("scenario")
	return cmd
}

func runSimulate(cmd *cobra.Command, opts simulateOptions) error {
	for _, p := range opts.policies {
		if !sim.ValidPolicy(p) {
			return fmt.Errorf("--policies: unknown policy %q (want some of %s)", p, strings.Join(sim.AllPolicies, ","))
		}
	}
	scs, err := sim.LoadScenarios(opts.scenarios)
	if err != nil {
		return err
	}
	seedOf := func(sc *sim.Scenario) uint64 {
		if cmd.Flags().Changed("seed") {
			return opts.seed
		}
		return sc.Seed
	}
	var all []sim.Result
	var report []sim.ReportScenario
	var sweeps []*sim.Sweep
	for _, sc := range scs {
		rs := sim.ReportScenario{Name: sc.Name, Description: sc.Description}
		if opts.sweep {
			sw, err := sim.SweepScenario(sc, opts.policies, seedOf(sc))
			if err != nil {
				return err
			}
			sweeps = append(sweeps, sw)
			rs.Sweep, rs.Results = sw, sw.Defaults
		} else {
			results, err := sim.Run(sc, opts.policies, seedOf(sc))
			if err != nil {
				return err
			}
			rs.Results = results
		}
		all = append(all, rs.Results...)
		report = append(report, rs)
	}
	out := cmd.OutOrStdout()
	if opts.sweep {
		fmt.Fprintln(out, "Pod-hours at equal p95 wait (keda's p95 on its defaults), read on each policy's frontier:")
		if err := sim.WriteFrontierTable(out, sweeps); err != nil {
			return err
		}
		fmt.Fprintln(out, "\nDefault settings:")
	}
	if err := sim.WriteTable(out, all); err != nil {
		return err
	}
	if err := writeFile(opts.csvPath, func(f *os.File) error { return sim.WriteCSV(f, all) }); err != nil {
		return err
	}
	if opts.frontierPath != "" && !opts.sweep {
		return fmt.Errorf("--frontier-csv needs the sweep (drop --sweep=false)")
	}
	if err := writeFile(opts.frontierPath, func(f *os.File) error { return sim.WriteFrontierCSV(f, sweeps) }); err != nil {
		return err
	}
	return writeFile(opts.htmlPath, func(f *os.File) error { return sim.WriteHTML(f, report) })
}

// writeFile creates path and fills it with write; an empty path is skipped.
func writeFile(path string, write func(*os.File) error) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}
