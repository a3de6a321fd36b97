package sim

import (
	"fmt"
	"math"
	"slices"
)

// Result is what one policy did on one scenario.
type Result struct {
	Scenario string
	Policy   string
	Tasks    int
	// Unfinished counts tasks still queued when the run ended; their wait
	// is counted up to the end.
	Unfinished int
	// PodSeconds bills every pod from creation to deletion (starting and
	// draining included): what the cluster pays.
	PodSeconds  float64
	NodeSeconds float64
	WaitMean    float64
	WaitP50     float64
	WaitP95     float64
	WaitP99     float64
	MaxBacklog  int
	MaxPods     int
	ScaleEvents int
	// PodsStarted counts pods created; each pays the start latency.
	PodsStarted int
	Series      []Point
}

func summarize(r *run) Result {
	res := Result{
		Tasks: len(r.waits), Unfinished: len(r.tasks) - r.started,
		PodSeconds: r.podSeconds, NodeSeconds: r.nodeSeconds,
		MaxBacklog: r.maxBacklog, MaxPods: r.maxPods, ScaleEvents: r.scaleEvents, PodsStarted: r.podsStarted, Series: r.series,
	}
	fillWaits(&res, r.waits)
	return res
}

// fillWaits sets the wait statistics from per-task waits.
func fillWaits(res *Result, waits []float64) {
	sorted := slices.Clone(waits)
	slices.Sort(sorted)
	var sum float64
	for _, w := range sorted {
		sum += w
	}
	res.WaitP50, res.WaitP95, res.WaitP99 = percentile(sorted, 0.50), percentile(sorted, 0.95), percentile(sorted, 0.99)
	if len(sorted) > 0 {
		res.WaitMean = sum / float64(len(sorted))
	}
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Run simulates each named policy on the scenario with the given seed. All
// policies see the same generated tasks.
func Run(sc *Scenario, policies []string, seed uint64) ([]Result, error) {
	tasks, err := Generate(sc, seed)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", sc.Name, err)
	}
	return runAll(sc, tasks, policies)
}

// runAll runs each named policy on one task list.
func runAll(sc *Scenario, tasks []Task, policies []string) ([]Result, error) {
	out := make([]Result, 0, len(policies))
	for _, name := range policies {
		if name == PolicyOracle {
			res := runOracle(sc, tasks)
			res.Scenario, res.Policy = sc.Name, name
			out = append(out, res)
			continue
		}
		ctl, err := newController(name, sc)
		if err != nil {
			return nil, fmt.Errorf("scenario %s: %w", sc.Name, err)
		}
		res := newRun(sc, tasks, ctl).simulate()
		res.Scenario, res.Policy = sc.Name, name
		out = append(out, res)
	}
	return out, nil
}
