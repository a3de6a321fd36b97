package sim

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

func TestFrontierKeepsParetoPoints(t *testing.T) {
	pts := []FrontierPoint{
		{Label: "a", P95: 10, PodHours: 50},
		{Label: "b", P95: 20, PodHours: 40},
		{Label: "c", P95: 25, PodHours: 45}, // dominated by b
		{Label: "d", P95: 20, PodHours: 42}, // same wait, more pods than b
		{Label: "e", P95: 40, PodHours: 30},
		{Label: "f", P95: 5, PodHours: 80},
		{Label: "nan", P95: math.NaN(), PodHours: 1},
	}
	var got []string
	for _, p := range Frontier(pts) {
		got = append(got, p.Label)
	}
	if strings.Join(got, ",") != "f,a,b,e" {
		t.Fatalf("frontier %v, want f,a,b,e", got)
	}
}

func TestPodHoursAtInterpolates(t *testing.T) {
	f := []FrontierPoint{{P95: 10, PodHours: 50}, {P95: 20, PodHours: 40}, {P95: 40, PodHours: 30}}
	for _, tc := range []struct {
		p95, want float64
	}{
		{10, 50}, {15, 45}, {20, 40}, {30, 35}, {40, 30},
		{100, 30}, // beyond the frontier: its cheapest point already waits less
	} {
		if got := PodHoursAt(f, tc.p95); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("PodHoursAt(%g) = %g, want %g", tc.p95, got, tc.want)
		}
	}
	for _, p95 := range []float64{5, math.NaN()} {
		if got := PodHoursAt(f, p95); !math.IsNaN(got) {
			t.Errorf("PodHoursAt(%g) = %g, want NaN (no setting reached it)", p95, got)
		}
	}
	if got := PodHoursAt(nil, 10); !math.IsNaN(got) {
		t.Errorf("empty frontier: %g, want NaN", got)
	}
}

func TestSettingsSweepTheMainKnobs(t *testing.T) {
	w := Workers{Concurrency: 4}
	if n := len(Settings(PolicyKeda, w)); n != 20*2*2 {
		t.Errorf("keda settings %d, want listLength 1..20 × 2 polling × 2 cooldown = 80", n)
	}
	labels := map[string]bool{}
	for _, s := range Settings(PolicyKeda, w) {
		labels[s.Label] = true
	}
	if !labels[kedaDefault] {
		t.Errorf("keda sweep lacks the default setting %q", kedaDefault)
	}
	for _, p := range []string{PolicySwell, PolicySwellWait, PolicyHPACPU} {
		if len(Settings(p, w)) < 5 {
			t.Errorf("%s: %d settings, want a sweep", p, len(Settings(p, w)))
		}
	}
}

// A sweep of a short scenario: frontiers are Pareto-sorted, the reference
// wait is keda's default p95, and the oracle is below every frontier.
func TestSweepScenario(t *testing.T) {
	sc := writeScenario(t, `duration: 30m
workload: {rate: 1, spikes: [{at: 10m, duration: 3m, rate: 6}], service: {dist: exponential, mean: 6s}}
workers: {startLatency: 15s, minReplicas: 0, maxReplicas: 60}
`, nil)
	sw, err := SweepScenario(sc, AllPolicies, 3)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(func() *Scenario {
		c := *sc
		c.Policies.Keda.ListLength, c.Policies.Keda.PollingInterval, c.Policies.Keda.CooldownPeriod = 5, Duration(30*time.Second), Duration(300*time.Second)
		return &c
	}(), []string{PolicyKeda}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if sw.RefP95 != res[0].WaitP95 {
		t.Fatalf("reference p95 %v, want keda's default p95 %v", sw.RefP95, res[0].WaitP95)
	}
	for p, f := range sw.Frontier {
		if len(f) == 0 {
			t.Fatalf("%s: empty frontier", p)
		}
		for i := 1; i < len(f); i++ {
			if f[i].P95 <= f[i-1].P95 || f[i].PodHours >= f[i-1].PodHours {
				t.Fatalf("%s: frontier not Pareto-sorted at %d: %+v", p, i, f)
			}
		}
		for _, q := range sw.Points[p] {
			if q.Unfinished == 0 && q.PodHours < sw.Oracle.PodHours {
				t.Fatalf("%s %s used %.2f pod-hours, below the oracle's %.2f", p, q.Label, q.PodHours, sw.Oracle.PodHours)
			}
		}
	}
	if math.IsNaN(sw.AtRef[PolicyKeda]) || sw.AtRef[PolicyKeda] > res[0].PodSeconds/3600+1e-9 {
		t.Fatalf("keda at its own default p95: %v pod-hours, want at most its default run's %v", sw.AtRef[PolicyKeda], res[0].PodSeconds/3600)
	}
	var out bytes.Buffer
	if err := WriteFrontierTable(&out, []*Sweep{sw}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "swell-wait vs keda") || !strings.Contains(out.String(), sc.Name+": ") {
		t.Fatalf("table lacks the comparison or the verdict:\n%s", out.String())
	}
}

// recordingSwell logs every decision the engine asks the swell policy for.
type recordingSwell struct {
	*swell
	log []swellStep
}

type swellStep struct {
	now     time.Time
	reading policy.QueueReading
	out     int32
}

func (r *recordingSwell) tick(run *run) int32 {
	out := r.swell.tick(run)
	r.log = append(r.log, swellStep{now: run.clock(), reading: reading(run), out: out})
	return out
}

// The swell policy is pkg/policy's QWorker decision with the QWorker's
// defaults: replaying a whole simulated run's readings through
// QWorkerPolicy.Ratio and QWorkerMemory.Settle gives every count it chose.
func TestSwellIsTheQWorkerDecision(t *testing.T) {
	sc := loadExample(t, "spike")
	p, interval := QWorkerPolicy(sc)
	if want := policy.QWorkerDefaults(0, 200, 1); !equalPolicy(p, want) || interval != policy.QWorkerPollingInterval {
		t.Fatalf("swell runs %+v every %v, want the QWorker defaults %+v every %v", p, interval, want, policy.QWorkerPollingInterval)
	}
	tasks, err := Generate(sc, sc.Seed)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingSwell{swell: newSwell(sc.Policies.Swell, sc.Workers)}
	newRun(sc, tasks, rec).simulate()
	if len(rec.log) < 1000 {
		t.Fatalf("only %d decisions recorded", len(rec.log))
	}
	var mem policy.QWorkerMemory
	desired, changes := p.Initial(0), 0
	for i, s := range rec.log {
		want := mem.Settle(s.now, p, desired, p.Ratio(s.reading), nil).Desired
		if s.out != want {
			t.Fatalf("decision %d at %v (%+v): simulator %d, pkg/policy %d", i, s.now, s.reading, s.out, want)
		}
		if want != desired {
			changes++
		}
		desired = want
	}
	if changes < 10 {
		t.Fatalf("only %d changes: the replay proves little", changes)
	}
}

func equalPolicy(a, b policy.QWorkerPolicy) bool {
	return a.Sizing == b.Sizing && a.Fallback == b.Fallback && (a.Behavior == nil) == (b.Behavior == nil)
}

// swell-wait on steady load with a 5 s target: the measured p95 meets the
// target, and it needs fewer pod-hours with a looser target.
func TestSwellWaitMeetsItsTargetOnSteadyLoad(t *testing.T) {
	sc := loadExample(t, "steady")
	tasks, err := Generate(sc, sc.Seed)
	if err != nil {
		t.Fatal(err)
	}
	run := func(target time.Duration) Result {
		c := *sc
		c.Policies.SwellWait.TargetWait = Duration(target)
		if err := c.Policies.validate(); err != nil {
			t.Fatal(err)
		}
		ctl, err := newController(PolicySwellWait, &c)
		if err != nil {
			t.Fatal(err)
		}
		return newRun(&c, tasks, ctl).simulate()
	}
	tight, loose := run(5*time.Second), run(60*time.Second)
	if tight.WaitP95 > 5 {
		t.Errorf("target 5 s: p95 wait %.1f s", tight.WaitP95)
	}
	if loose.PodSeconds >= tight.PodSeconds {
		t.Errorf("target 60 s used %.0f pod-seconds, not fewer than target 5 s's %.0f", loose.PodSeconds, tight.PodSeconds)
	}
}

// Until a task has finished the model has no service time: swell-wait
// grows by scalingFactor (the first task still gets a worker) and never
// shrinks below what it has.
func TestSwellWaitScalesFromZeroBeforeTheModelIsKnown(t *testing.T) {
	sc := writeScenario(t, oneTask, map[string]string{"t.csv": "6,3\n"})
	res, err := Run(sc, []string{PolicySwellWait}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.WaitP99 != 24 || r.Unfinished != 0 {
		t.Fatalf("wait p99 %v, unfinished %d; want 24 (10 s poll + 20 s start − 6 s) and none left", r.WaitP99, r.Unfinished)
	}
}
