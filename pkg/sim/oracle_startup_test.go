package sim

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// periodicTasks is n tasks of service seconds, the first at first and one
// every every seconds after it.
func periodicTasks(n int, first, every, service float64) []Task {
	out := make([]Task, n)
	for i := range out {
		out[i] = Task{Arrival: first + float64(i)*every, Service: service}
	}
	return out
}

// boundScenario is a validated scenario with the given start-up and length.
func boundScenario(t *testing.T, startup, duration float64, maxReplicas int32) *Scenario {
	t.Helper()
	sc := &Scenario{Name: "bound", Duration: Duration(duration * float64(time.Second)),
		Workload: Workload{Rate: 1, Service: Service{Dist: "constant", Mean: Duration(10 * time.Second)}},
		Workers:  Workers{StartLatency: Duration(startup * float64(time.Second)), MaxReplicas: maxReplicas}}
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	return sc
}

// Hand-made workloads with closed-form answers: pod-seconds = busy time +
// per level one start-up (from 0 at the earliest) + Σ min(gap, start-up).
func TestOracleStartupClosedForm(t *testing.T) {
	for _, tc := range []struct {
		name           string
		tasks          []Task
		startup, until float64
		want, oracle   float64
		pods           int
	}{
		// Gaps of 90 s > 30 s: every task gets its own pod, 30 s + 10 s.
		{"gaps longer than start-up", periodicTasks(10, 100, 100, 10), 30, 1200, 10 * 40, 100, 10},
		// Gaps of 10 s < 30 s: one pod, created at 70 s, kept to 290 s.
		{"gaps shorter than start-up", periodicTasks(10, 100, 20, 10), 30, 1200, 220, 100, 1},
		// A gap exactly the start-up costs the same either way; not bridged.
		{"gap equal to start-up", periodicTasks(2, 100, 40, 10), 30, 1200, 80, 20, 2},
		// Needed at 10 s with a 30 s start-up: billed from 0, the run's start.
		{"needed before start-up can end", periodicTasks(1, 10, 0, 10), 30, 1200, 20, 10, 1},
		// Busy past the end: billed to the end (500 s), from 70 s.
		{"busy at the end", []Task{{Arrival: 100, Service: 1000}}, 30, 500, 430, 400, 1},
		// Two levels: level 1 busy 100–150, level 2 busy 110–120.
		{"two levels", []Task{{100, 50}, {110, 10}}, 30, 1200, 80 + 40, 60, 2},
		// Level 1 bridges a 5 s gap (100–110, 115–125); level 2 serves once.
		{"bridge on one level only", []Task{{100, 10}, {100, 10}, {115, 10}}, 30, 1200, 55 + 40, 30, 2},
		// No start-up: the oracle itself.
		{"zero start-up is the oracle", periodicTasks(10, 100, 20, 10), 0, 1200, 100, 100, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := boundScenario(t, tc.startup, tc.until, 5)
			got := runOracleStartup(sc, tc.tasks)
			oracle := runOracle(sc, tc.tasks)
			if math.Abs(got.PodSeconds-tc.want) > 1e-9 || math.Abs(oracle.PodSeconds-tc.oracle) > 1e-9 || got.PodsStarted != tc.pods {
				t.Fatalf("oracle-startup %v pod-seconds with %d pods, oracle %v; want %v with %d pods, oracle %v",
					got.PodSeconds, got.PodsStarted, oracle.PodSeconds, tc.want, tc.pods, tc.oracle)
			}
			if got.WaitP99 != oracle.WaitP99 || got.MaxBacklog != oracle.MaxBacklog {
				t.Fatalf("waits differ from the oracle's schedule: p99 %v vs %v", got.WaitP99, oracle.WaitP99)
			}
		})
	}
}

// The bound holds for real runs: every simulated policy run that served
// every task on arrival (the oracle's schedule) paid at least the bound.
func TestOracleStartupBoundsZeroWaitRuns(t *testing.T) {
	for _, tc := range []struct {
		name, trace string
		bound       float64
	}{
		{"every 100 s", traceRows(10, 100, 100), 400},
		{"every 20 s", traceRows(10, 100, 20), 220},
	} {
		zeroWait := 0
		for minReplicas := range 3 {
			sc := writeScenario(t, fmt.Sprintf(`duration: 20m
workload: {trace: {file: t.csv}, service: {dist: constant, mean: 10s}}
workers: {startLatency: 30s, minReplicas: %d, maxReplicas: 5}
`, minReplicas), map[string]string{"t.csv": tc.trace})
			res, err := Run(sc, AllPolicies, 1)
			if err != nil {
				t.Fatal(err)
			}
			bound := res[len(res)-1]
			if bound.Policy != PolicyOracleStartup || math.Abs(bound.PodSeconds-tc.bound) > 1e-9 {
				t.Fatalf("%s: %s %v pod-seconds, want oracle-startup %v", tc.name, bound.Policy, bound.PodSeconds, tc.bound)
			}
			for _, r := range res {
				if _, ref := referenceBound(r.Policy); ref || r.WaitMean != 0 || r.Unfinished != 0 {
					continue
				}
				zeroWait++
				if r.PodSeconds < bound.PodSeconds-1e-9 {
					t.Errorf("%s, min %d: %s served every task on arrival with %v pod-seconds, below the bound %v",
						tc.name, minReplicas, r.Policy, r.PodSeconds, bound.PodSeconds)
				}
			}
		}
		if zeroWait == 0 {
			t.Fatalf("%s: no policy run served every task on arrival; the test checks nothing", tc.name)
		}
	}
}

// traceRows is a trace CSV of n single tasks, the first at first seconds.
func traceRows(n int, first, every float64) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%g,1\n", first+float64(i)*every)
	}
	return b.String()
}

// On the shipped scenarios the bound equals its closed form, computed
// here level by level from the oracle's pod curve, lies above the oracle,
// keeps the oracle's waits and within maxReplicas, and its series shows
// what it bills.
func TestOracleStartupMatchesItsFormula(t *testing.T) {
	for _, name := range []string{"steady", "spike", "azure-llm-conv"} {
		sc := loadExample(t, name)
		res, err := Run(sc, []string{PolicyOracle, PolicyOracleStartup}, sc.Seed)
		if err != nil {
			t.Fatal(err)
		}
		oracle, bound := res[0], res[1]
		tasks, err := Generate(sc, sc.Seed)
		if err != nil {
			t.Fatal(err)
		}
		horizon := sc.Duration.Seconds()
		_, changes := oracleSchedule(sc, tasks)
		want := levelFormula(podCurve(oracleSizing(sc), changes, horizon), sc.Workers.StartLatency.Seconds(), horizon)
		if math.Abs(bound.PodSeconds-want) > 1e-6*want || bound.PodSeconds < oracle.PodSeconds {
			t.Errorf("%s: oracle-startup %v pod-seconds, closed form %v, oracle %v", name, bound.PodSeconds, want, oracle.PodSeconds)
		}
		if bound.MaxPods > int(sc.Workers.MaxReplicas) || bound.WaitP95 != oracle.WaitP95 {
			t.Errorf("%s: max pods %d (max %d), p95 %v (oracle %v)", name, bound.MaxPods, sc.Workers.MaxReplicas, bound.WaitP95, oracle.WaitP95)
		}
		var area float64
		for i := 1; i < len(bound.Series); i++ {
			area += float64(bound.Series[i-1].Pods) * (bound.Series[i].T - bound.Series[i-1].T)
		}
		if rel := math.Abs(area-bound.PodSeconds) / bound.PodSeconds; rel > 0.05 {
			t.Errorf("%s: series area %v pod-seconds, billed %v: the plot does not show what is billed", name, area, bound.PodSeconds)
		}
	}
}

// levelFormula is the bound's closed form, level by level: busy time +
// min(s, first busy start) + Σ min(gap, s) over the level's gaps.
func levelFormula(steps []podStep, s, horizon float64) float64 {
	top := 0
	for _, st := range steps {
		top = max(top, st.pods)
	}
	var total float64
	for k := 1; k <= top; k++ {
		on, seen := false, false
		var since, off float64
		for _, st := range steps {
			switch {
			case !on && st.pods >= k:
				on = true
				if !seen {
					total += min(s, st.at)
				} else {
					total += min(st.at-off, s)
				}
				seen, since = true, st.at
			case on && st.pods < k:
				on, off = false, st.at
				total += off - since
			}
		}
		if on {
			total += horizon - since
		}
	}
	return total
}

// The verdict adds the start-up-aware comparison only where swell-wait is
// not within OracleTarget of the oracle.
func TestVerdictNamesTheStartupBound(t *testing.T) {
	for _, tc := range []struct {
		name              string
		wait, oracle, bnd float64
		want              string
	}{
		{"far from the oracle", 6.0, 3.9, 5.5, "oracle-startup, is 5.5 pod-hours (+41% vs oracle), and swell-wait is +9% from it"},
		{"below the zero-wait bound", 6.0, 3.9, 6.5, "is 6.5 pod-hours (+67% vs oracle), and swell-wait is -8% below it"},
		{"within the oracle target", 4.2, 3.9, 5.5, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := &Sweep{Scenario: "s", RefP95: 60, AtRef: map[string]float64{PolicyKeda: 10, PolicySwellWait: tc.wait,
				PolicyOracle: tc.oracle, PolicyOracleStartup: tc.bnd}}
			v := Verdict(sw)
			if tc.want == "" && strings.Contains(v, "oracle-startup") {
				t.Fatalf("verdict mentions oracle-startup though swell-wait is within %v of the oracle: %s", OracleTarget, v)
			}
			if !strings.Contains(v, tc.want) || !strings.HasPrefix(v, "target met") {
				t.Fatalf("verdict %q lacks %q", v, tc.want)
			}
		})
	}
}
