package sim

import (
	"bytes"
	"encoding/csv"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// loadExample loads one shipped scenario.
func loadExample(t testing.TB, name string) *Scenario {
	t.Helper()
	sc, err := LoadScenario(filepath.Join("..", "..", "examples", "sim", name+".yaml"))
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return sc
}

// writeScenario writes a scenario (and optional files) into a temp dir.
func writeScenario(t *testing.T, yaml string, files map[string]string) *Scenario {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "s.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	sc, err := LoadScenario(path)
	if err != nil {
		t.Fatalf("LoadScenario: %v", err)
	}
	return sc
}

func TestShippedScenariosLoadAndRun(t *testing.T) {
	scs, err := LoadScenarios([]string{filepath.Join("..", "..", "examples", "sim")})
	if err != nil {
		t.Fatal(err)
	}
	if len(scs) < 4 {
		t.Fatalf("found %d scenarios, want at least 4", len(scs))
	}
	for _, sc := range scs {
		results, err := Run(sc, AllPolicies, sc.Seed)
		if err != nil {
			t.Fatalf("%s: %v", sc.Name, err)
		}
		for _, r := range results {
			if r.Tasks == 0 || r.PodSeconds <= 0 || r.WaitP50 > r.WaitP95 || r.WaitP95 > r.WaitP99 {
				t.Errorf("%s/%s: implausible result %+v", sc.Name, r.Policy, r.Tasks)
			}
		}
	}
}

func TestSameSeedSameNumbers(t *testing.T) {
	for _, name := range []string{"spike", "bursty", "trace"} {
		sc := loadExample(t, name)
		a, err := Run(sc, AllPolicies, 42)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Run(sc, AllPolicies, 42)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: two runs with seed 42 differ", name)
		}
	}
}

func TestDifferentSeedDifferentWorkload(t *testing.T) {
	sc := loadExample(t, "spike")
	a, _ := Generate(sc, 1)
	b, _ := Generate(sc, 2)
	if reflect.DeepEqual(a, b) {
		t.Fatal("seeds 1 and 2 generated the same tasks")
	}
}

func TestGeneratorRates(t *testing.T) {
	tests := []struct {
		name     string
		workload string
		want     float64 // expected task count
	}{
		{"steady", "rate: 2", 2 * 3600},
		{"spike adds its window", "rate: 1\n  spikes: [{at: 10m, duration: 10m, rate: 3}]", 3600 + 3*600},
		{"diurnal averages the wave", "diurnal: {period: 1h, peakRate: 4, troughRate: 2}", 3 * 3600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := writeScenario(t, "duration: 1h\nworkload:\n  "+tt.workload+"\n  service: {mean: 1s}\nworkers: {maxReplicas: 1}\n", nil)
			tasks, err := Generate(sc, 7)
			if err != nil {
				t.Fatal(err)
			}
			if got := float64(len(tasks)); math.Abs(got-tt.want) > 4*math.Sqrt(tt.want) {
				t.Fatalf("generated %v tasks, want about %v", got, tt.want)
			}
			for i := 1; i < len(tasks); i++ {
				if tasks[i].Arrival < tasks[i-1].Arrival || tasks[i].Arrival >= 3600 {
					t.Fatalf("task %d arrives at %v: not sorted or past the horizon", i, tasks[i].Arrival)
				}
			}
		})
	}
}

func TestSpikeOnlyInsideItsWindow(t *testing.T) {
	sc := writeScenario(t, "duration: 1h\nworkload:\n  spikes: [{at: 10m, duration: 5m, rate: 5}]\n  service: {mean: 1s}\nworkers: {maxReplicas: 1}\n", nil)
	tasks, _ := Generate(sc, 3)
	for _, task := range tasks {
		if task.Arrival < 600 || task.Arrival >= 900 {
			t.Fatalf("spike task at %vs, outside [600, 900)", task.Arrival)
		}
	}
}

func TestServiceDistributionsKeepTheirMean(t *testing.T) {
	for _, dist := range []string{"exponential", "constant", "lognormal"} {
		svc := Service{Dist: dist, Mean: Duration(4 * time.Second), CV: 1.5}
		r := newRand(9, 1)
		var sum float64
		const n = 200_000
		for range n {
			v := svc.draw(r)
			if v < 0 {
				t.Fatalf("%s drew %v < 0", dist, v)
			}
			sum += v
		}
		if mean := sum / n; math.Abs(mean-4) > 0.1 {
			t.Errorf("%s: mean %v, want about 4", dist, mean)
		}
	}
}

func TestBurstsAreHeavyTailedAndCapped(t *testing.T) {
	sc := writeScenario(t, "duration: 10h\nworkload:\n  bursts: {rate: 0.01, alpha: 1.1, minSize: 2, maxSize: 500}\n  service: {mean: 1s}\nworkers: {maxReplicas: 1}\n", nil)
	tasks, _ := Generate(sc, 5)
	sizes := map[float64]int{}
	for _, task := range tasks {
		sizes[task.Arrival]++
	}
	small, biggest := 0, 0
	for _, n := range sizes {
		if n < 5 {
			small++
		}
		biggest = max(biggest, n)
	}
	if small*2 < len(sizes) || biggest > 500 || biggest < 50 {
		t.Fatalf("%d bursts, %d small, biggest %d: want mostly small, some over 50, none over 500", len(sizes), small, biggest)
	}
}

func TestTraceParsing(t *testing.T) {
	trace := "timestamp,tasks,service\n0,2,\n10,1,3.5\n# a comment\n7200,5,\n"
	sc := writeScenario(t, "duration: 1h\nworkload:\n  trace: {file: t.csv}\n  service: {dist: constant, mean: 2s}\nworkers: {maxReplicas: 1}\n",
		map[string]string{"t.csv": trace})
	tasks, err := Generate(sc, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []Task{{0, 2}, {0, 2}, {10, 3.5}} // the 7200 s row is past the horizon
	if !reflect.DeepEqual(tasks, want) {
		t.Fatalf("tasks = %v, want %v", tasks, want)
	}
}

func TestTraceRFC3339IsRelativeToFirstRow(t *testing.T) {
	trace := "2026-03-01T10:00:00Z,1\n2026-03-01T10:01:30Z,1\n"
	sc := writeScenario(t, "duration: 1h\nworkload:\n  trace: {file: t.csv}\n  service: {dist: constant, mean: 1s}\nworkers: {maxReplicas: 1}\n",
		map[string]string{"t.csv": trace})
	tasks, err := Generate(sc, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 2 || tasks[1].Arrival != 90 {
		t.Fatalf("tasks = %v, want arrivals at 0 and 90", tasks)
	}
}

func TestTraceErrors(t *testing.T) {
	for name, trace := range map[string]string{
		"bad count":   "0,x\n1,-1\n",
		"bad service": "0,1\n1,1,-2\n",
		"bad time":    "0,1\nnoon,1\n",
		"one column":  "0\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseTrace(strings.NewReader(trace), name, 100, Service{Dist: "constant", Mean: Duration(time.Second)}, newRand(1, 1))
			if err == nil {
				t.Fatalf("trace %q parsed without error", trace)
			}
		})
	}
}

func TestScenarioValidation(t *testing.T) {
	bad := map[string]string{
		"no duration":       "workload: {rate: 1, service: {mean: 1s}}\nworkers: {maxReplicas: 1}\n",
		"no arrivals":       "duration: 1h\nworkload: {service: {mean: 1s}}\nworkers: {maxReplicas: 1}\n",
		"min over max":      "duration: 1h\nworkload: {rate: 1, service: {mean: 1s}}\nworkers: {minReplicas: 3, maxReplicas: 1}\n",
		"unknown dist":      "duration: 1h\nworkload: {rate: 1, service: {dist: weibull, mean: 1s}}\nworkers: {maxReplicas: 1}\n",
		"unknown field":     "duration: 1h\nworkload: {rate: 1, service: {mean: 1s}}\nworkers: {maxReplicas: 1, replicas: 3}\n",
		"bad duration":      "duration: soon\nworkload: {rate: 1, service: {mean: 1s}}\nworkers: {maxReplicas: 1}\n",
		"bad nodes":         "duration: 1h\nworkload: {rate: 1, service: {mean: 1s}}\nworkers: {maxReplicas: 1}\nnodes: {podsPerNode: 0}\n",
		"negative listLen":  "duration: 1h\nworkload: {rate: 1, service: {mean: 1s}}\nworkers: {maxReplicas: 1}\npolicies: {keda: {listLength: -1}}\n",
		"bad bursts":        "duration: 1h\nworkload: {bursts: {rate: 1, alpha: 0, minSize: 1}, service: {mean: 1s}}\nworkers: {maxReplicas: 1}\n",
		"inverted diurnal":  "duration: 1h\nworkload: {diurnal: {period: 1h, peakRate: 1, troughRate: 2}, service: {mean: 1s}}\nworkers: {maxReplicas: 1}\n",
		"zero service mean": "duration: 1h\nworkload: {rate: 1, service: {mean: 0s}}\nworkers: {maxReplicas: 1}\n",
	}
	for name, body := range bad {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.yaml")
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadScenario(path); err == nil {
				t.Fatalf("LoadScenario accepted %q", body)
			}
		})
	}
}

func TestDurationAcceptsSecondsAndStrings(t *testing.T) {
	sc := writeScenario(t, "duration: 90\nsampleEvery: 1m\nworkload: {rate: 1, service: {mean: 1.5}}\nworkers: {maxReplicas: 1}\n", nil)
	if sc.Duration.Seconds() != 90 || sc.SampleEvery.Seconds() != 60 || sc.Workload.Service.Mean.Seconds() != 1.5 {
		t.Fatalf("durations = %v, %v, %v; want 90s, 60s, 1.5s", sc.Duration, sc.SampleEvery, sc.Workload.Service.Mean)
	}
}

// oneTask is a scenario with a single constant-time task at t=5s.
const oneTask = `duration: 30m
workload:
  trace: {file: t.csv}
  service: {dist: constant, mean: 10s}
workers: {startLatency: 20s, minReplicas: 0, maxReplicas: 5}
`

// A QWorker with default settings measures its queue every 5 s and sizes
// by queued messages only: the task arriving at 6 s is seen at the 10 s
// poll, its pod is ready at 30 s, and the pool returns to zero at the 40 s
// poll, the instant the task is done. Billed 30 s.
func TestSwellDecidesOnItsPoll(t *testing.T) {
	sc := writeScenario(t, oneTask, map[string]string{"t.csv": "6,1\n"})
	res, err := Run(sc, []string{PolicySwell}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.WaitP50 != 24 || r.ScaleEvents != 2 || math.Abs(r.PodSeconds-30) > 1e-9 {
		t.Fatalf("wait %v, scale events %d, pod-seconds %v; want 24, 2, 30", r.WaitP50, r.ScaleEvents, r.PodSeconds)
	}
}

// pollInterval sets the QWorker's pollingIntervalSeconds.
func TestSwellPollingInterval(t *testing.T) {
	sc := writeScenario(t, oneTask+"policies: {swell: {interval: 30s}}\n", map[string]string{"t.csv": "6,1\n"})
	res, _ := Run(sc, []string{PolicySwell}, 1)
	if got := res[0].WaitP50; got != 44 { // poll at 30 s + 20 s start - arrival 6 s
		t.Fatalf("wait %v, want 44 (next 30 s poll, then 20 s start)", got)
	}
}

func TestKedaWakesOnPollAndSleepsAfterCooldown(t *testing.T) {
	sc := writeScenario(t, oneTask, map[string]string{"t.csv": "5,1\n"})
	res, _ := Run(sc, []string{PolicyKeda}, 1)
	r := res[0]
	// Poll at 30 s wakes one pod, ready at 50 s; the queue empties at once,
	// so the last active poll is 30 s and cooldown ends at the 330 s poll.
	if r.WaitP50 != 45 || math.Abs(r.PodSeconds-300) > 1e-9 || r.ScaleEvents != 2 {
		t.Fatalf("wait %v, pod-seconds %v, events %d; want 45, 300, 2", r.WaitP50, r.PodSeconds, r.ScaleEvents)
	}
}

func TestOracleIsALowerBound(t *testing.T) {
	for _, name := range []string{"steady", "spike", "bursty"} {
		sc := loadExample(t, name)
		res, _ := Run(sc, AllPolicies, sc.Seed)
		oracle := res[len(res)-1]
		if oracle.Policy != PolicyOracle {
			t.Fatalf("last policy is %s", oracle.Policy)
		}
		for _, r := range res[:len(res)-1] {
			if r.PodSeconds < oracle.PodSeconds {
				t.Errorf("%s: %s used %v pod-seconds, below the oracle's %v", name, r.Policy, r.PodSeconds, oracle.PodSeconds)
			}
		}
	}
}

func TestOracleMatchesWorkForOneTask(t *testing.T) {
	sc := writeScenario(t, oneTask, map[string]string{"t.csv": "5,3\n"})
	res, _ := Run(sc, []string{PolicyOracle}, 1)
	if r := res[0]; r.WaitP99 != 0 || r.PodSeconds != 30 || r.MaxPods != 3 {
		t.Fatalf("oracle: wait %v, pod-seconds %v, max pods %d; want 0, 30, 3", r.WaitP99, r.PodSeconds, r.MaxPods)
	}
}

func TestNodeProvisioningDelaysPods(t *testing.T) {
	withNodes := oneTask + "nodes: {podsPerNode: 2, provisionLatency: 60s}\n"
	sc := writeScenario(t, withNodes, map[string]string{"t.csv": "5,1\n"})
	res, _ := Run(sc, []string{PolicySwell}, 1)
	if r := res[0]; r.WaitP50 != 80 || r.NodeSeconds <= 0 {
		t.Fatalf("wait %v, node-seconds %v; want 80 (60 s node + 20 s pod) and a billed node", r.WaitP50, r.NodeSeconds)
	}
}

func TestHPACPUNeverScalesToZero(t *testing.T) {
	sc := writeScenario(t, oneTask, map[string]string{"t.csv": "5,1\n"})
	res, _ := Run(sc, []string{PolicyHPACPU}, 1)
	for _, p := range res[0].Series {
		if p.Replicas < 1 {
			t.Fatalf("hpa-cpu at %vs has %d replicas, want >= 1", p.T, p.Replicas)
		}
	}
}

func TestReports(t *testing.T) {
	sc := loadExample(t, "spike")
	res, err := Run(sc, AllPolicies, sc.Seed)
	if err != nil {
		t.Fatal(err)
	}
	var table, csvOut, html bytes.Buffer
	if err := WriteTable(&table, res); err != nil {
		t.Fatal(err)
	}
	for _, p := range AllPolicies {
		if !strings.Contains(table.String(), p) {
			t.Errorf("table lacks policy %s:\n%s", p, table.String())
		}
	}
	if err := WriteCSV(&csvOut, res); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&csvOut).ReadAll()
	if err != nil || len(rows) != 1+len(AllPolicies) || rows[0][4] != "pod_seconds" {
		t.Fatalf("csv: %d rows, header %v, err %v", len(rows), rows[0], err)
	}
	if err := WriteHTML(&html, []ReportScenario{{Name: "spike <b>", Description: sc.Description, Results: res}}); err != nil {
		t.Fatal(err)
	}
	out := html.String()
	if strings.Count(out, "<svg") != 2 || strings.Contains(out, "spike <b>") || strings.Contains(out, "<script") || strings.Contains(out, "http://cdn") {
		t.Fatalf("html report: want 2 inline svgs, escaped names, no scripts")
	}
}

func TestDownsampleKeepsPeaks(t *testing.T) {
	series := make([]Point, 5000)
	for i := range series {
		series[i] = Point{T: float64(i)}
	}
	series[3333].Pods = 99
	pts := downsample(series, func(p Point) float64 { return float64(p.Pods) })
	peak := 0.0
	for _, p := range pts {
		peak = math.Max(peak, p.v)
	}
	if len(pts) > maxPlotPoints || peak != 99 {
		t.Fatalf("downsample: %d points, peak %v; want <= %d points keeping 99", len(pts), peak, maxPlotPoints)
	}
}
