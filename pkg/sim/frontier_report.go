package sim

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// SavingsTarget is the goal for the wait-target policy: this much
// fewer pod-hours than KEDA-style at equal p95 wait.
const SavingsTarget = 0.30

// OracleTarget is how close to the oracle the wait-target policy should be.
const OracleTarget = 0.15

// equalWaitPolicies are the table's columns, in order.
var equalWaitPolicies = []string{PolicyKeda, PolicySwell, PolicySwellWait, PolicyHPACPU, PolicyOracle}

// WriteFrontierTable prints, per scenario, each policy's pod-hours at the
// p95 wait KEDA reaches on its defaults (interpolated on each policy's
// frontier), the oracle as lower bound, and the verdict on the savings
// target.
func WriteFrontierTable(w io.Writer, sweeps []*Sweep) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := append([]string{"scenario", "p95 s"}, equalWaitPolicies...)
	header = append(header, "swell-wait vs keda", "oracle vs keda", "swell-wait vs oracle", "")
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	for _, sw := range sweeps {
		row := []string{sw.Scenario, fmt.Sprintf("%.1f", sw.RefP95)}
		for _, p := range equalWaitPolicies {
			row = append(row, fmtHours(sw.AtRef[p]))
		}
		keda, wait, oracle := sw.AtRef[PolicyKeda], sw.AtRef[PolicySwellWait], sw.AtRef[PolicyOracle]
		row = append(row, fmtChange(wait, keda), fmtChange(oracle, keda), fmtChange(wait, oracle), "")
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	fmt.Fprintln(w)
	for _, sw := range sweeps {
		fmt.Fprintf(w, "%s: %s\n", sw.Scenario, Verdict(sw))
	}
	return nil
}

// Verdict states the savings target's outcome for one scenario in words.
func Verdict(sw *Sweep) string {
	keda, wait, oracle := sw.AtRef[PolicyKeda], sw.AtRef[PolicySwellWait], sw.AtRef[PolicyOracle]
	switch {
	case math.IsNaN(keda) || math.IsNaN(wait):
		return fmt.Sprintf("no comparison: a frontier does not reach p95 %.1f s", sw.RefP95)
	case oracle > (1-SavingsTarget)*keda:
		return fmt.Sprintf("the physics do not allow %.0f%%: even the oracle needs %.1f pod-hours, only %.0f%% fewer than keda's %.1f; swell-wait needs %.1f (%s vs keda, %s vs oracle)",
			100*SavingsTarget, oracle, 100*(1-oracle/keda), keda, wait, fmtChange(wait, keda), fmtChange(wait, oracle))
	case wait <= (1-SavingsTarget)*keda:
		return fmt.Sprintf("target met: swell-wait needs %.1f pod-hours against keda's %.1f (%s) at p95 %.1f s; oracle %.1f (swell-wait %s vs oracle)",
			wait, keda, fmtChange(wait, keda), sw.RefP95, oracle, fmtChange(wait, oracle))
	default:
		return fmt.Sprintf("target missed: swell-wait needs %.1f pod-hours against keda's %.1f (%s) at p95 %.1f s, where the oracle allows %.1f (%s)",
			wait, keda, fmtChange(wait, keda), sw.RefP95, oracle, fmtChange(oracle, keda))
	}
}

func fmtHours(h float64) string {
	if math.IsNaN(h) {
		return "n/a"
	}
	return fmt.Sprintf("%.1f", h)
}

// fmtChange is a's change against b, e.g. "-40%".
func fmtChange(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%+.0f%%", 100*(a/b-1))
}

// WriteFrontierCSV writes every swept run: scenario, policy, setting,
// pod-hours, p95 wait, and whether the run is on its policy's frontier.
func WriteFrontierCSV(w io.Writer, sweeps []*Sweep) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"scenario", "policy", "setting", "pod_hours", "wait_p95_s", "on_frontier"}); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	for _, sw := range sweeps {
		for _, p := range equalWaitPolicies {
			if p == PolicyOracle {
				if err := cw.Write([]string{sw.Scenario, p, "", f(sw.Oracle.PodHours), f(sw.Oracle.P95), "true"}); err != nil {
					return fmt.Errorf("write csv: %w", err)
				}
				continue
			}
			on := map[string]bool{}
			for _, q := range sw.Frontier[p] {
				on[q.Label] = true
			}
			for _, q := range sw.Points[p] {
				if err := cw.Write([]string{sw.Scenario, p, q.Label, f(q.PodHours), f(q.P95), strconv.FormatBool(on[q.Label])}); err != nil {
					return fmt.Errorf("write csv: %w", err)
				}
			}
		}
	}
	cw.Flush()
	return cw.Error()
}
