package podautoscaler

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/cpa"
	"github.com/swell-autoscaler/swell/pkg/policy/waittime"
	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/stats"
)

func f64(v float64) *float64 { return &v }

func TestDecodeWait(t *testing.T) {
	cases := []struct {
		name string
		q    swellv1.QueueSource
		want *waitSpec
		err  string
	}{
		{"none", swellv1.QueueSource{}, nil, ""},
		{"target only", swellv1.QueueSource{TargetWaitSeconds: f64(5)}, &waitSpec{Target: waittime.Target{Wait: 5 * time.Second}}, ""},
		{"all", swellv1.QueueSource{TargetWaitSeconds: f64(2.5), TargetPercentile: f64(0.99), ServiceTimeSeconds: f64(0.2)},
			&waitSpec{Target: waittime.Target{Wait: 2500 * time.Millisecond, Percentile: 0.99}, ServiceTime: 200 * time.Millisecond}, ""},
		{"percentile alone", swellv1.QueueSource{TargetPercentile: f64(0.9)}, nil, "spec.metric.source.targetPercentile applies only with targetWaitSeconds"},
		{"service time alone", swellv1.QueueSource{ServiceTimeSeconds: f64(1)}, nil, "spec.metric.source.serviceTimeSeconds applies only with targetWaitSeconds"},
		{"percentile out of range", swellv1.QueueSource{TargetWaitSeconds: f64(5), TargetPercentile: f64(0.9999)}, nil, "spec.metric.source.targetPercentile 0.9999: must be from 0.5 to 0.999"},
		{"zero wait", swellv1.QueueSource{TargetWaitSeconds: f64(0)}, nil, "spec.metric.source.targetWaitSeconds 0: must be > 0"},
		{"negative service time", swellv1.QueueSource{TargetWaitSeconds: f64(5), ServiceTimeSeconds: f64(-1)}, nil, "spec.metric.source.serviceTimeSeconds -1: must be > 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := decodeWait(&c.q)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("decodeWait = %v, want an error containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (c.want == nil) || (got != nil && *got != *c.want) {
				t.Fatalf("decodeWait = %+v, want %+v", got, c.want)
			}
		})
	}
}

// statsPod is a ready pod of the target reporting its task stats.
func statsPod(uid string, created time.Time, startup time.Duration, rep *stats.Report) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: uid, UID: types.UID(uid), CreationTimestamp: metav1.NewTime(created)},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(created.Add(startup))},
		}}}
	if rep != nil {
		p.Annotations = map[string]string{stats.Annotation: stats.Encode(*rep)}
	}
	return p
}

// TestWaitReplicasSequence runs passes of the model and checks each
// answer against waittime with the inputs the pass should have derived.
func TestWaitReplicasSequence(t *testing.T) {
	t0 := time.Unix(10000, 0)
	target := waittime.Target{Wait: 5 * time.Second}
	type pass struct {
		at      time.Duration
		sample  source.Sample
		pods    []corev1.Pod
		current int32
		want    int32
		why     string // substring of the reason
		// model, when set, are the inputs the pass must derive: want is
		// then waittime's answer for them.
		model *waittime.Inputs
	}
	cases := []struct {
		name   string
		spec   waitSpec
		passes []pass
	}{
		{
			name: "given service time, in-flight counted by the broker",
			spec: waitSpec{Target: target, ServiceTime: time.Second},
			passes: []pass{
				{0, source.Sample{Backlog: 10, Ready: 0, InFlight: 10}, nil, 10, 10, "arrival rate not measured yet", nil},
				// 10 busy for 2 s at 1 s each: 20 done, nothing grew:
				// λ = 10/s → Erlang C 11 for p95 ≤ 5 s.
				{2 * time.Second, source.Sample{Backlog: 10, Ready: 0, InFlight: 10}, nil, 10, 11, "arrivals 10/s", nil},
			},
		},
		{
			name: "scale from zero while unknown",
			spec: waitSpec{Target: target, ServiceTime: time.Second},
			passes: []pass{
				{0, source.Sample{Backlog: 3, Ready: 3}, nil, 0, 1, "answering 1", nil},
			},
		},
		{
			name: "no service time and no stats: holds",
			spec: waitSpec{Target: target},
			passes: []pass{
				{0, source.Sample{Backlog: 5, Ready: 5}, nil, 2, 2, "no serviceTimeSeconds and no pod", nil},
				{2 * time.Second, source.Sample{Backlog: 5, Ready: 5}, nil, 2, 2, "no serviceTimeSeconds and no pod", nil},
			},
		},
		{
			name: "service time measured from the pods' stats",
			spec: waitSpec{Target: target},
			passes: []pass{
				{0, source.Sample{}, []corev1.Pod{
					statsPod("a", t0.Add(-time.Hour), 3*time.Second, &stats.Report{Tasks: 100, BusySeconds: 200, Concurrency: 2}),
				}, 1, 1, "arrival rate not measured yet", nil},
				// 10 more tasks, 20 s busy: 2 s each; λ = 10 in 2 s = 5/s.
				{2 * time.Second, source.Sample{}, []corev1.Pod{
					statsPod("a", t0.Add(-time.Hour), 3*time.Second, &stats.Report{Tasks: 110, BusySeconds: 220, Concurrency: 2}),
				}, 1, 0, "arrivals 5/s × service 2s", &waittime.Inputs{ArrivalRate: 5, ServiceTime: 2 * time.Second, Concurrency: 2,
					StartupTime: 3 * time.Second, Current: 1, MaxReplicas: 100}},
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var w waitState
			for i, p := range c.passes {
				n, why := w.replicas(&c.spec, waitInput{Now: t0.Add(p.at), Sample: p.sample, Pods: p.pods, Current: p.current, Max: 100})
				if !strings.Contains(why, p.why) {
					t.Fatalf("pass %d: reason %q, want it to contain %q", i, why, p.why)
				}
				want := p.want
				if p.model != nil {
					want = int32(waittime.Replicas(*p.model, c.spec.Target).Replicas)
				}
				if n != want {
					t.Fatalf("pass %d: %d (%s), want %d", i, n, why, want)
				}
			}
		})
	}
}

// waittimeFor reads the worker count back from a model reason ("→ N
// workers").
func waittimeFor(t *testing.T, why string) int {
	t.Helper()
	_, after, ok := strings.Cut(why, "→ ")
	if !ok {
		t.Fatalf("reason %q names no worker count", why)
	}
	var n int
	for _, r := range after {
		if r < '0' || r > '9' {
			break
		}
		n = n*10 + int(r-'0')
	}
	return n
}

// fakeTarget is a scale target whose pods are fixed.
type fakeTarget struct {
	pods []corev1.Pod
	err  error
}

func (f fakeTarget) Get(context.Context) (*cpa.TargetState, error) { return nil, nil }
func (f fakeTarget) Pods(context.Context, *cpa.TargetState) ([]corev1.Pod, error) {
	return f.pods, f.err
}
func (f fakeTarget) Scale(context.Context, *cpa.TargetState, int32) error { return nil }

// TestMeasureWaitAnswersTheModel: with a wait target the queue source's
// answer is a replica count, not the backlog, and an old head raises it.
func TestMeasureWaitAnswersTheModel(t *testing.T) {
	q := swellv1.QueueSource{ScalerConfigRef: "redis", Queue: "tasks", TargetWaitSeconds: f64(5), ServiceTimeSeconds: f64(1)}
	ws, err := decodeWait(&q)
	if err != nil {
		t.Fatal(err)
	}
	spec := paSpec{Namespace: "ns", Source: &q, Wait: ws, Max: 1000, Interval: time.Second}
	obj := &unstructured.Unstructured{}
	obj.SetName("web")
	ts := &cpa.TargetState{Object: obj, Replicas: 10}
	t0 := time.Unix(20000, 0)
	run := func(age time.Duration) []string {
		st := &objState{}
		var out []string
		for i, at := range []time.Duration{0, 2 * time.Second} {
			s := source.Sample{Backlog: 110, Ready: 100, InFlight: 10, OldestAge: age}
			r := &Reconciler{Sources: fixedSources{src: sample{s: s}}}
			m, _, why, err := r.measureWait(context.Background(), spec, fakeTarget{}, ts, st, t0.Add(at))
			if err != nil || len(m) != 1 || m[0].Resource != "web" {
				t.Fatalf("pass %d: %v, %v", i, m, err)
			}
			out = append(out, m[0].Value+" "+why)
		}
		return out
	}
	fresh, late := run(0), run(20*time.Second)
	// First pass: rate unknown, hold the current 10.
	if !strings.HasPrefix(fresh[0], "10 ") {
		t.Fatalf("first pass %q, want 10 (held)", fresh[0])
	}
	// Second: λ = 10/s (10 busy at 1 s each, no growth), 100 waiting; the
	// answer is waittime's for those inputs, and a 20 s old head (4× the
	// target) asks for more.
	in := waittime.Inputs{ArrivalRate: 10, ServiceTime: time.Second, Concurrency: 1, Backlog: 100, InFlight: 10,
		Current: 10, MaxReplicas: 1000, PollInterval: time.Second}
	wantFresh := waittime.Replicas(in, ws.Target).Replicas
	in.OldestAge = 20 * time.Second
	wantLate := waittime.Replicas(in, ws.Target).Replicas
	if !strings.HasPrefix(fresh[1], formatCount(int32(wantFresh))+" ") || !strings.HasPrefix(late[1], formatCount(int32(wantLate))+" ") || wantLate <= wantFresh {
		t.Fatalf("fresh %q, late %q: want %d and %d (more for the late head)", fresh[1], late[1], wantFresh, wantLate)
	}
	if waittimeFor(t, fresh[1]) != wantFresh {
		t.Fatalf("reason %q does not name the answer %d", fresh[1], wantFresh)
	}
	t.Logf("fresh: %s", fresh[1])
	t.Logf("late:  %s", late[1])
}
