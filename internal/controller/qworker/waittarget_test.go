package qworker

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/swell-autoscaler/swell/pkg/policy"
	"github.com/swell-autoscaler/swell/pkg/policy/waittime"
	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/stats"
)

// fakeWorkers plays the pool's workers: each pass, every worker reports
// its cumulative counters, as the SDK's annotation would.
type fakeWorkers struct {
	pods    int
	tasks   int64
	busy    float64
	silent  bool
	startup time.Duration
}

// work adds n tasks of service time s spread over the pool.
func (f *fakeWorkers) work(n int, s time.Duration) {
	f.tasks += int64(n)
	f.busy += float64(n) * s.Seconds()
}

// reading is what readWorkers would return for the pool's pods.
func (f *fakeWorkers) reading() workerReading {
	r := workerReading{Reports: map[string]stats.Report{}, Pods: f.pods}
	if f.silent || f.pods == 0 {
		return r
	}
	// All the work is reported by one pod, the others report nothing new:
	// the tracker must count pool-wide totals either way.
	r.Reports["pod-0"] = stats.Report{Tasks: f.tasks, BusySeconds: f.busy, Concurrency: 1}
	for i := 1; i < f.pods; i++ {
		r.Reports["pod-"+string(rune('a'+i))] = stats.Report{Concurrency: 1}
	}
	if f.startup > 0 {
		r.Startups = []time.Duration{f.startup}
	}
	return r
}

func waitSpec(wait time.Duration, minR, maxR int32) workerSpec {
	return workerSpec{
		Sizing:     policy.QueueSizing{MinReplicas: minR, MaxReplicas: maxR, ScalingFactor: 0.1},
		Fallback:   policy.Fallback{FailureThreshold: 3},
		WaitTarget: &waittime.Target{Wait: wait, Percentile: 0.95},
	}
}

// TestWaitTargetDecisions drives decide() pass by pass with an injected
// clock and a fake stats reader, checking each transition.
func TestWaitTargetDecisions(t *testing.T) {
	type pass struct {
		// every pass is one second after the previous one unless advance
		// says otherwise.
		advance time.Duration
		backlog int64
		// completed tasks (1 s each) since the previous pass.
		done   int
		failed bool
		silent bool
		// want is the desired count; wantIn a substring of the reason.
		want    int32
		wantIn  string
		wantMod bool
		// wantRange bounds desired when want is -1 and it is set.
		wantRange [2]int32
	}
	steady := func(n int) []pass {
		ps := make([]pass, n)
		for i := range ps {
			ps[i] = pass{done: 10, want: -1}
		}
		return ps
	}
	cases := []struct {
		name   string
		spec   workerSpec
		pods   int
		passes []pass
	}{
		{
			name: "no report yet: holds, grows by scalingFactor only",
			spec: waitSpec(5*time.Second, 0, 50), pods: 2,
			passes: []pass{
				{backlog: 100, silent: true, want: 10, wantIn: "no worker has reported"},
				{backlog: 10, silent: true, want: 10, wantIn: "holding 10"},
				{backlog: 0, silent: true, want: 10, wantIn: "holding 10"},
			},
		},
		{
			// λ = 10/s, S = 1 s: Erlang C gives 11 servers for p95 ≤ 5 s
			// (C(11, 10) ≈ 0.68, × e^(−5) ≈ 0.005 ≤ 0.05; 10 is unstable).
			name: "steady load: Erlang C size",
			spec: waitSpec(5*time.Second, 1, 50), pods: 11,
			passes: append(steady(5), pass{done: 10, want: 11, wantIn: "predicted p95 wait", wantMod: true}),
		},
		{
			name: "maxReplicas caps the model",
			spec: waitSpec(5*time.Second, 1, 8), pods: 8,
			passes: append(steady(5), pass{done: 10, want: 8, wantIn: "unbounded", wantMod: true}),
		},
		{
			name: "a failed measurement holds (fallback guard), never zero",
			spec: waitSpec(5*time.Second, 0, 50), pods: 11,
			passes: append(steady(5),
				pass{done: 10, want: 11},
				pass{failed: true, want: 11, wantIn: "source failing: holding 11"},
				pass{failed: true, want: 11},
			),
		},
		{
			name: "workers stop reporting for longer than the estimator keeps data: hold",
			spec: waitSpec(5*time.Second, 0, 50), pods: 11,
			passes: append(steady(5),
				pass{done: 10, want: 11},
				pass{advance: 6 * time.Minute, backlog: 3, want: 11, wantIn: "not measured"},
			),
		},
		{
			name: "idle for a minute with an empty queue: minReplicas",
			spec: waitSpec(5*time.Second, 0, 50), pods: 11,
			passes: append(steady(5),
				pass{done: 10, want: 11},
				pass{advance: 30 * time.Second, want: -1},
				pass{advance: 31 * time.Second, want: 0, wantIn: "no task finished for 1m0s: minReplicas 0"},
				// The smoothed arrival rate still remembers the load a
				// minute ago: at least one worker, at most the old size.
				pass{backlog: 1, want: -1, wantRange: [2]int32{1, 11}},
			),
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := &workerState{}
			now := time.Unix(10_000, 0)
			workers := &fakeWorkers{pods: c.pods}
			for i, p := range c.passes {
				now = now.Add(time.Second)
				now = now.Add(p.advance)
				workers.work(p.done, time.Second)
				workers.silent = p.silent
				st.wait.reading = workers.reading()
				var err error
				if p.failed {
					err = errors.New("connection refused")
				}
				d := st.decide(now, c.spec, int32(c.pods), source.Sample{Backlog: p.backlog, Ready: p.backlog}, err)
				if p.want >= 0 && d.Desired != p.want {
					t.Fatalf("pass %d: desired %d, want %d (%s)", i, d.Desired, p.want, d.Reason)
				}
				if p.wantRange[1] > 0 && (d.Desired < p.wantRange[0] || d.Desired > p.wantRange[1]) {
					t.Fatalf("pass %d: desired %d, want %d…%d (%s)", i, d.Desired, p.wantRange[0], p.wantRange[1], d.Reason)
				}
				if d.Desired == 0 && (p.failed || p.silent) {
					t.Fatalf("pass %d: scaled to zero on missing data (%s)", i, d.Reason)
				}
				if p.wantIn != "" && !strings.Contains(d.Reason, p.wantIn) {
					t.Fatalf("pass %d: reason %q, want it to contain %q", i, d.Reason, p.wantIn)
				}
				if p.wantMod && (d.Wait == nil || d.Wait.Model == nil || d.Wait.Model.ArrivalRate < 9 || d.Wait.Model.ArrivalRate > 11 || d.Wait.Model.ServiceTimeSeconds != 1) {
					t.Fatalf("pass %d: model %+v, want arrivals ≈ 10/s and service 1 s", i, d.Wait)
				}
			}
		})
	}
}

// TestWaitTargetStatusStableUnderNoise checks that the published model and
// reason do not change on every pass when the load only jitters.
func TestWaitTargetStatusStableUnderNoise(t *testing.T) {
	spec := waitSpec(5*time.Second, 1, 50)
	st := &workerState{}
	now := time.Unix(10_000, 0)
	workers := &fakeWorkers{pods: 11}
	changes, active := 0, int32(11)
	var last string
	for i := range 60 {
		now = now.Add(time.Second)
		workers.work(9+2*(i%2), time.Second) // 9, 11, 9, 11 … tasks/s
		st.wait.reading = workers.reading()
		d := st.decide(now, spec, active, source.Sample{}, nil)
		active = d.Desired // the pool follows the decision
		if d.Reason != last {
			t.Logf("pass %d: %s", i, d.Reason)
			changes++
			last = d.Reason
		}
	}
	// Without the publication rule every pass would rewrite it (the rate
	// differs each pass); with it, it changes when the model becomes known
	// and a few times while the smoothed rate settles from its first
	// sample (11/s) toward 10/s: at most once per 10 passes.
	if changes > 6 {
		t.Fatalf("reason changed %d times in 60 passes of jitter, want ≤ 6 (last: %s)", changes, last)
	}
}

func TestReadWorkers(t *testing.T) {
	created := time.Unix(1000, 0)
	pod := func(name string, ann string, readyAfter time.Duration, phase corev1.PodPhase) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name), CreationTimestamp: metav1.NewTime(created)}}
		if ann != "" {
			p.Annotations = map[string]string{stats.Annotation: ann}
		}
		p.Status.Phase = phase
		if readyAfter > 0 {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(created.Add(readyAfter))}}
		}
		return p
	}
	r := readWorkers([]corev1.Pod{
		pod("a", `{"tasks":5,"busySeconds":2.5,"concurrency":1}`, 3*time.Second, corev1.PodRunning),
		pod("fast", "", time.Nanosecond, corev1.PodRunning),
		pod("b", `garbage`, 5*time.Second, corev1.PodRunning),
		pod("c", "", 0, corev1.PodPending),
		pod("d", `{"tasks":9,"busySeconds":1,"concurrency":1}`, 0, corev1.PodSucceeded),
	})
	if r.Pods != 4 || len(r.Reports) != 1 || r.Reports["a"].Tasks != 5 || len(r.Startups) != 3 {
		t.Fatalf("reading %+v: want 4 live pods, one valid report (a), three start-up times", r)
	}
	// Ready within the timestamps' one-second resolution reads as 1 s,
	// never 0 (which the model takes for "not measured").
	if slices.Min(r.Startups) != time.Second {
		t.Fatalf("start-ups %v: want the fastest at 1s", r.Startups)
	}
}

func TestRound3(t *testing.T) {
	for in, want := range map[float64]float64{0: 0, 12.345: 12.3, 0.0012345: 0.00123, 98765: 98800, -2.555: -2.56} {
		if got := round3(in); got != want {
			t.Errorf("round3(%v) = %v, want %v", in, got, want)
		}
	}
}

func TestStatsOnlyUpdateDoesNotWakeTheQWorker(t *testing.T) {
	base := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "w", ResourceVersion: "1", Annotations: map[string]string{stats.Annotation: `{"tasks":1,"busySeconds":1,"concurrency":1}`}}}
	statsMoved := base.DeepCopy()
	statsMoved.ResourceVersion, statsMoved.Annotations[stats.Annotation] = "2", `{"tasks":2,"busySeconds":2,"concurrency":1}`
	retired := statsMoved.DeepCopy()
	retired.Annotations[AnnotationRetire] = "true"
	ready := statsMoved.DeepCopy()
	ready.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	for name, tc := range map[string]struct {
		newPod *corev1.Pod
		want   bool
	}{
		"stats only":             {statsMoved, true},
		"stats and retire mark":  {retired, false},
		"stats and readiness":    {ready, false},
		"nothing changed at all": {base, false},
	} {
		if got := statsOnlyUpdate(base, tc.newPod); got != tc.want {
			t.Errorf("%s: statsOnlyUpdate = %v, want %v", name, got, tc.want)
		}
	}
}
