package sim

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
)

// baseline returns the keda result of a scenario, the reference every
// other policy is compared with, or nil when keda was not run.
func baseline(results []Result, scenario string) *Result {
	for i := range results {
		if results[i].Scenario == scenario && results[i].Policy == PolicyKeda {
			return &results[i]
		}
	}
	return nil
}

// scenarios lists scenario names in first-seen order.
func scenarios(results []Result) []string {
	var names []string
	seen := map[string]bool{}
	for _, r := range results {
		if !seen[r.Scenario] {
			seen[r.Scenario] = true
			names = append(names, r.Scenario)
		}
	}
	return names
}

// vsKeda formats the pod-seconds change against keda, e.g. "-40%".
func vsKeda(r Result, base *Result) string {
	if base == nil || base.PodSeconds == 0 || r.Policy == PolicyKeda {
		return "-"
	}
	return fmt.Sprintf("%+.0f%%", 100*(r.PodSeconds/base.PodSeconds-1))
}

// WriteTable prints one block per scenario for the terminal.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tpolicy\tpod-hours\tvs keda\twait p50 s\tp95 s\tp99 s\tmax backlog\tmax pods\tscale events\tunfinished\t")
	for _, name := range scenarios(results) {
		base := baseline(results, name)
		for _, r := range results {
			if r.Scenario != name {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%s\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t\n", r.Scenario, r.Policy, r.PodSeconds/3600,
				vsKeda(r, base), r.WaitP50, r.WaitP95, r.WaitP99, r.MaxBacklog, r.MaxPods, r.ScaleEvents, r.Unfinished)
		}
	}
	return tw.Flush()
}

// WriteCSV writes one row per scenario and policy.
func WriteCSV(w io.Writer, results []Result) error {
	cw := csv.NewWriter(w)
	header := []string{"scenario", "policy", "tasks", "unfinished", "pod_seconds", "node_seconds", "wait_mean_s",
		"wait_p50_s", "wait_p95_s", "wait_p99_s", "max_backlog", "max_pods", "scale_events"}
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	for _, r := range results {
		row := []string{r.Scenario, r.Policy, strconv.Itoa(r.Tasks), strconv.Itoa(r.Unfinished), f(r.PodSeconds), f(r.NodeSeconds),
			f(r.WaitMean), f(r.WaitP50), f(r.WaitP95), f(r.WaitP99), strconv.Itoa(r.MaxBacklog), strconv.Itoa(r.MaxPods), strconv.Itoa(r.ScaleEvents)}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("write csv: %w", err)
		}
	}
	cw.Flush()
	return cw.Error()
}
