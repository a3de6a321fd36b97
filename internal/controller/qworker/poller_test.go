package qworker

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"

	"github.com/swell-autoscaler/swell/pkg/policy"
	"github.com/swell-autoscaler/swell/pkg/policy/waittime"
	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/stats"
)

func TestSettledPool(t *testing.T) {
	spec := workerSpec{Sizing: policy.QueueSizing{MinReplicas: 1, MaxReplicas: 5, ScalingFactor: 1}}
	atMin := decision{Measured: true, Raw: 1, Desired: 1, Previous: 1}
	clean := poolView{alive: 1, ready: 1}
	idle := source.Sample{}
	waiting := spec
	waiting.WaitTarget = &waittime.Target{Wait: 5 * time.Second}
	upWindow, downOnly, vpa := spec, spec, spec
	vpa.ActivateVPA = true
	upWindow.Behavior = &policy.Behavior{ScaleUp: policy.ScalingRules{StabilizationWindow: ptr.To(30 * time.Second)}}
	downOnly.Behavior = &policy.Behavior{ScaleDown: policy.ScalingRules{StabilizationWindow: ptr.To(30 * time.Second)}}
	cases := []struct {
		name   string
		spec   workerSpec
		d      decision
		sample source.Sample
		view   poolView
		active int32
		caught bool
		want   bool
	}{
		{"idle queue, pool at its floor, every pod ready", spec, atMin, idle, clean, 1, true, true},
		{"scale to zero pool at zero", workerSpec{}, decision{Measured: true}, idle, poolView{}, 0, true, true},
		{"backlog waiting", spec, atMin, source.Sample{Backlog: 1, Ready: 1}, clean, 1, true, false},
		{"a task in flight", spec, atMin, source.Sample{Backlog: 1, InFlight: 1}, clean, 1, true, false},
		{"pool above its floor", spec, decision{Measured: true, Raw: 2, Desired: 2}, idle, poolView{alive: 2, ready: 2}, 2, true, false},
		{"scale-down held by the window", spec, decision{Measured: true, Raw: 1, Desired: 1}, idle, poolView{alive: 2, ready: 2}, 2, true, false},
		{"a pod not yet ready", spec, atMin, idle, poolView{alive: 1}, 1, true, false},
		{"a pod retiring", spec, atMin, idle, poolView{alive: 2, ready: 2}, 1, true, false},
		{"a finished pod to remove", spec, atMin, idle, poolView{alive: 1, ready: 1, finished: []*corev1.Pod{{}}}, 1, true, false},
		{"cache still owes a change", spec, atMin, idle, clean, 1, false, false},
		{"broker failed", spec, decision{Measured: false, MeasureErr: fakeErr("broker down"), Raw: 1, Desired: 1}, idle, clean, 1, true, false},
		{"falling back", spec, decision{Measured: true, FallingBack: true, Raw: 1, Desired: 1}, idle, clean, 1, true, false},
		{"wait target with workers reads their stats each poll", waiting, atMin, idle, clean, 1, true, false},
		{"scale-up window records every idle recommendation", upWindow, atMin, idle, clean, 1, true, false},
		{"activateVPA reads pod metrics each pass", vpa, atMin, idle, clean, 1, true, false},
		{"scale-down rules alone do not need the idle polls", downOnly, atMin, idle, clean, 1, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := settledPool(c.spec, c.d, c.sample, c.view, c.active, c.caught); got != c.want {
				t.Fatalf("settledPool = %v, want %v", got, c.want)
			}
		})
	}
}

func TestPollQueueOrdersReplacesAndRemoves(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	q := newPollQueue()
	key := func(n string) types.NamespacedName { return types.NamespacedName{Namespace: "ns", Name: n} }
	q.schedule(key("c"), t0.Add(3*time.Second), workerSpec{}, nil, nil)
	q.schedule(key("a"), t0.Add(1*time.Second), workerSpec{}, nil, nil)
	q.schedule(key("b"), t0.Add(2*time.Second), workerSpec{}, nil, nil)
	q.schedule(key("c"), t0.Add(500*time.Millisecond), workerSpec{}, nil, nil) // replaces its entry
	q.remove(key("b"))
	if q.len() != 2 {
		t.Fatalf("len = %d, want 2 (one entry per QWorker)", q.len())
	}
	due, next := q.popDue(t0.Add(time.Second))
	if len(due) != 2 || due[0].key != key("c") || due[1].key != key("a") {
		t.Fatalf("due = %v, want c then a", keysOf(due))
	}
	if next != 0 || q.len() != 0 {
		t.Fatalf("after popping all: next %s, len %d", next, q.len())
	}
	q.schedule(key("d"), t0.Add(4*time.Second), workerSpec{}, nil, nil)
	if due, next := q.popDue(t0.Add(time.Second)); len(due) != 0 || next != 3*time.Second {
		t.Fatalf("popDue early = %v, %s; want none, 3s", keysOf(due), next)
	}
}

func keysOf(es []*pollEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.key.Name)
	}
	return out
}

// countingSource answers with a sample set by the test and counts calls.
type countingSource struct {
	mu     sync.Mutex
	sample source.Sample
	calls  int
}

func (s *countingSource) Measure(context.Context) (source.Sample, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return s.sample, nil
}
func (s *countingSource) Close() error { return nil }
func (s *countingSource) set(b int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sample = source.Sample{Backlog: b, Ready: b}
}

// oneSource hands out src and counts the lookups.
type oneSource struct {
	src     source.Source
	lookups int
}

func (o *oneSource) QWorkerSource(context.Context, string, string, string, string) (source.Source, error) {
	o.lookups++
	return o.src, nil
}

// TestQuietPollWakesOnlyOnChange runs the poller's measurement path: a
// settled QWorker's unchanged idle queue is measured every interval
// without waking a reconcile, and the first backlog wakes it with the
// sample to decide on.
func TestQuietPollWakesOnlyOnChange(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(t0)
	src := &countingSource{}
	sources := &oneSource{src: src}
	r := &Reconciler{Clock: clk, Sources: sources, exp: newExpectations(), sched: newSchedules()}
	key := types.NamespacedName{Namespace: "ns", Name: "w"}
	spec := workerSpec{Key: key, ScalerConfig: "sc", Queue: "q", PollingInterval: time.Second,
		Sizing: policy.QueueSizing{MaxReplicas: 3, ScalingFactor: 1}}
	qw := &QWorker{}
	qw.Namespace, qw.Name = key.Namespace, key.Name

	// A reconcile measured (idle) and decided: zero pods, settled.
	s := r.sched.get(key)
	s.started, s.sourceKey = t0, sourceKeyOf(spec)
	s.remember(decision{Measured: true}, 0, source.Sample{})
	if !r.settle(spec, qw, decision{Measured: true}, poolView{}, 0, t0) {
		t.Fatal("an idle pool at zero is not settled")
	}

	poll := func(at time.Duration) {
		t.Helper()
		clk.SetTime(t0.Add(at))
		due, _ := r.sched.polls.popDue(clk.Now())
		if len(due) != 1 {
			t.Fatalf("at %s: %d entries due, want 1", at, len(due))
		}
		r.pollOnce(context.Background(), due[0])
		s.mu.Lock()
		done := s.done
		s.mu.Unlock()
		<-done
	}
	for i := 1; i <= 3; i++ {
		poll(time.Duration(i) * time.Second)
	}
	if src.calls != 3 {
		t.Fatalf("broker asked %d times in 3 intervals, want 3", src.calls)
	}
	if sources.lookups != 1 {
		t.Fatalf("source looked up %d times in 3 quiet polls, want 1 (then reused)", sources.lookups)
	}
	if n := len(r.sched.wakeups); n != 0 {
		t.Fatalf("%d wake-ups for an unchanged idle queue, want 0", n)
	}
	if m := s.take(); m != nil {
		t.Fatalf("a quiet poll left a result to decide on: %+v", m)
	}

	src.set(4)
	poll(4 * time.Second)
	if n := len(r.sched.wakeups); n != 1 {
		t.Fatalf("%d wake-ups after the backlog appeared, want 1", n)
	}
	m := s.take()
	if m == nil || m.sample.Backlog != 4 {
		t.Fatalf("result after the backlog appeared = %+v, want backlog 4", m)
	}
	if r.sched.polls.len() != 0 {
		t.Fatal("the poller kept a QWorker whose queue moved; the reconcile owns it now")
	}
}

// TestStatsReportWakesOnlyASettledQWorker: a worker's stats report alone
// wakes nothing while the QWorker's passes run on its polls, but does wake
// a settled one, whose polls are quiet, so its task metrics follow.
func TestStatsReportWakesOnlyASettledQWorker(t *testing.T) {
	key := types.NamespacedName{Namespace: "team", Name: "workers"}
	pod := func(report string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "w-1", Namespace: "team", ResourceVersion: report,
			Annotations:     map[string]string{stats.Annotation: `{"tasks":` + report + `}`},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: qv1.GroupVersion.String(), Kind: "QWorker", Name: "workers", Controller: ptr.To(true)}}}}
	}
	for _, settled := range []bool{false, true} {
		ss := newSchedules()
		ss.get(key).settled = settled
		q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
		h := &podHandler{exp: newExpectations(), settled: ss.isSettled}
		h.Update(context.Background(), event.UpdateEvent{ObjectOld: pod("1"), ObjectNew: pod("2")}, q)
		if woken := q.Len() == 1; woken != settled {
			t.Errorf("settled %v: woken %v, want %v", settled, woken, settled)
		}
		q.ShutDown()
	}
}
