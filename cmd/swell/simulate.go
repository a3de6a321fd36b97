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
	scenarios []string
	policies  []string
	seed      uint64
	csvPath   string
	htmlPath  string
}

// newSimulateCmd builds `swell simulate`, which replays scenario files
// through every scaling policy and reports cost and wait per policy.
func newSimulateCmd() *cobra.Command {
	opts := simulateOptions{}
	cmd := &cobra.Command{
		Use:   "simulate --scenario FILE|DIR [--policies swell,keda,hpa-cpu,oracle] [--seed N] [--csv FILE] [--html FILE]",
		Short: "Simulate scaling policies on a workload and compare pod-seconds and task wait",
		Long: `simulate runs a discrete-event simulation of queue workers under the swell, keda,
hpa-cpu and oracle policies, all deciding through Swell's policy code. It prints a
table and can write CSV and a self-contained HTML report with plots.

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
	var all []sim.Result
	var report []sim.ReportScenario
	for _, sc := range scs {
		seed := sc.Seed
		if cmd.Flags().Changed("seed") {
			seed = opts.seed
		}
		results, err := sim.Run(sc, opts.policies, seed)
		if err != nil {
			return err
		}
		all = append(all, results...)
		report = append(report, sim.ReportScenario{Name: sc.Name, Description: sc.Description, Results: results})
	}
	if err := sim.WriteTable(cmd.OutOrStdout(), all); err != nil {
		return err
	}
	if err := writeFile(opts.csvPath, func(f *os.File) error { return sim.WriteCSV(f, all) }); err != nil {
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
