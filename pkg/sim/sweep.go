package sim

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"
)

// Setting is one value of a policy's main knob, applied to a copy of a
// scenario before the run.
type Setting struct {
	Policy string
	// Label names the value in reports, e.g. "listLength=5 polling=30s".
	Label string
	apply func(*PolicyConfig)
}

// FrontierPoint is one run on a frontier chart.
type FrontierPoint struct {
	Label    string
	PodHours float64
	P95      float64
	// Unfinished counts tasks still queued at the end: such a run did less
	// work, so its pod-hours can fall below the oracle's.
	Unfinished int
}

// Sweep is one scenario swept over every policy's knob.
type Sweep struct {
	Scenario    string
	Description string
	// Points are every run per policy; Frontier the Pareto-optimal ones,
	// by p95 ascending (pod-hours then strictly falling).
	Points   map[string][]FrontierPoint
	Frontier map[string][]FrontierPoint
	// Oracle is the lower bound: no policy can use fewer pod-hours than
	// the work itself at any wait.
	Oracle FrontierPoint
	// RefP95 is the wait all policies are compared at: the p95 of KEDA on
	// its default settings (listLength 5, pollingInterval 30 s, cooldown
	// 300 s), the status quo a user would move from.
	RefP95 float64
	// AtRef is each policy's pod-hours at RefP95 on its frontier; NaN
	// when the frontier does not reach that wait.
	AtRef map[string]float64
	// Defaults are the runs on each policy's default settings (with the
	// oracle), for the time-series plots.
	Defaults []Result
}

// slotsPerTask are the swell sweep's scalingFactor values times
// concurrency: worker slots per queued task.
var slotsPerTask = []float64{0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3}

// waitTargets are the swell-wait sweep's targetWaitSeconds.
var waitTargets = []float64{0.5, 1, 2, 3, 5, 8, 12, 20, 30, 45, 60, 90, 120, 180}

// Settings lists the sweep of a policy for a scenario: KEDA's listLength
// 1…20 with pollingInterval 15/30 s and cooldownPeriod 60/300 s; the
// QWorker's scalingFactor; swell-wait's targetWaitSeconds; hpa-cpu's
// target utilisation.
func Settings(policy string, w Workers) []Setting {
	var out []Setting
	add := func(label string, apply func(*PolicyConfig)) {
		out = append(out, Setting{Policy: policy, Label: label, apply: apply})
	}
	switch policy {
	case PolicyKeda:
		for ll := int64(1); ll <= 20; ll++ {
			for _, poll := range []time.Duration{15 * time.Second, 30 * time.Second} {
				for _, cool := range []time.Duration{60 * time.Second, 300 * time.Second} {
					add(fmt.Sprintf("listLength=%d polling=%v cooldown=%v", ll, poll, cool), func(c *PolicyConfig) {
						c.Keda.ListLength, c.Keda.PollingInterval, c.Keda.CooldownPeriod = ll, Duration(poll), Duration(cool)
					})
				}
			}
		}
	case PolicySwell:
		for _, s := range slotsPerTask {
			f := s / float64(max(w.Concurrency, 1))
			add(fmt.Sprintf("scalingFactor=%.4g", f), func(c *PolicyConfig) { c.Swell.ScalingFactor = f })
		}
	case PolicySwellWait:
		for _, t := range waitTargets {
			d := Duration(t * float64(time.Second))
			add(fmt.Sprintf("targetWaitSeconds=%g", t), func(c *PolicyConfig) { c.SwellWait.TargetWait = d })
		}
	case PolicyHPACPU:
		for _, u := range []int32{30, 40, 50, 60, 70, 80, 90} {
			add(fmt.Sprintf("targetUtilization=%d", u), func(c *PolicyConfig) { c.HPACPU.TargetUtilization = u })
		}
	}
	return out
}

// kedaDefault is the KEDA setting RefP95 comes from.
const kedaDefault = "listLength=5 polling=30s cooldown=5m0s"

// SweepScenario runs every setting of every named policy on one task list
// (generated once from seed), in parallel, and builds the frontiers.
func SweepScenario(sc *Scenario, policies []string, seed uint64) (*Sweep, error) {
	tasks, err := Generate(sc, seed)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", sc.Name, err)
	}
	var settings []Setting
	for _, p := range policies {
		if p != PolicyOracle {
			settings = append(settings, Settings(p, sc.Workers)...)
		}
	}
	results := make([]Result, len(settings))
	errs := make([]error, len(settings))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, s := range settings {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i], errs[i] = runSetting(sc, tasks, s)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	sw := &Sweep{Scenario: sc.Name, Description: sc.Description, Points: map[string][]FrontierPoint{},
		Frontier: map[string][]FrontierPoint{}, AtRef: map[string]float64{}, RefP95: math.NaN()}
	for i, s := range settings {
		r := results[i]
		sw.Points[s.Policy] = append(sw.Points[s.Policy], FrontierPoint{Label: s.Label, PodHours: r.PodSeconds / 3600, P95: r.WaitP95, Unfinished: r.Unfinished})
		if s.Policy == PolicyKeda && s.Label == kedaDefault {
			sw.RefP95 = r.WaitP95
		}
	}
	oracle := runOracle(sc, tasks)
	oracle.Scenario, oracle.Policy = sc.Name, PolicyOracle
	sw.Oracle = FrontierPoint{Label: "oracle", PodHours: oracle.PodSeconds / 3600, P95: oracle.WaitP95}
	for p, pts := range sw.Points {
		sw.Frontier[p] = Frontier(pts)
		sw.AtRef[p] = PodHoursAt(sw.Frontier[p], sw.RefP95)
	}
	sw.AtRef[PolicyOracle] = sw.Oracle.PodHours
	defaults, err := runAll(sc, tasks, policies)
	if err != nil {
		return nil, err
	}
	sw.Defaults = defaults
	return sw, nil
}

// runSetting runs one setting on a copy of the scenario.
func runSetting(sc *Scenario, tasks []Task, s Setting) (Result, error) {
	c := *sc
	s.apply(&c.Policies)
	if err := c.Policies.validate(); err != nil {
		return Result{}, fmt.Errorf("scenario %s, %s %s: %w", sc.Name, s.Policy, s.Label, err)
	}
	ctl, err := newController(s.Policy, &c)
	if err != nil {
		return Result{}, err
	}
	res := newRun(&c, tasks, ctl).simulate()
	res.Scenario, res.Policy = sc.Name, s.Policy
	return res, nil
}

// Frontier keeps the Pareto-optimal points: sorted by p95 wait, each
// kept point uses fewer pod-hours than every point with a lower or equal
// wait.
func Frontier(points []FrontierPoint) []FrontierPoint {
	sorted := slices.Clone(points)
	slices.SortStableFunc(sorted, func(a, b FrontierPoint) int {
		if a.P95 != b.P95 {
			return cmpFloat(a.P95, b.P95)
		}
		return cmpFloat(a.PodHours, b.PodHours)
	})
	var out []FrontierPoint
	best := math.Inf(1)
	for _, p := range sorted {
		if math.IsNaN(p.PodHours) || math.IsNaN(p.P95) || p.PodHours >= best {
			continue
		}
		out = append(out, p)
		best = p.PodHours
	}
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// PodHoursAt is the pod-hours a policy needs for a p95 wait of p95 on its
// frontier: linear between the two frontier points around it, the
// cheapest point's pod-hours beyond the frontier's largest wait (that
// point already waits less), and NaN below its smallest wait (no setting
// reached it).
func PodHoursAt(frontier []FrontierPoint, p95 float64) float64 {
	if len(frontier) == 0 || math.IsNaN(p95) || p95 < frontier[0].P95 {
		return math.NaN()
	}
	for i := 1; i < len(frontier); i++ {
		a, b := frontier[i-1], frontier[i]
		if p95 <= b.P95 {
			if b.P95 == a.P95 {
				return b.PodHours
			}
			f := (p95 - a.P95) / (b.P95 - a.P95)
			return a.PodHours + f*(b.PodHours-a.PodHours)
		}
	}
	return frontier[len(frontier)-1].PodHours
}

// Sweeps runs SweepScenario for each scenario.
func Sweeps(scs []*Scenario, policies []string, seed func(*Scenario) uint64) ([]*Sweep, error) {
	out := make([]*Sweep, 0, len(scs))
	for _, sc := range scs {
		sw, err := SweepScenario(sc, policies, seed(sc))
		if err != nil {
			return nil, err
		}
		out = append(out, sw)
	}
	return out, nil
}
