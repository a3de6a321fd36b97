package policy

import (
	"testing"
	"time"

	"github.com/swell-autoscaler/swell/pkg/policy/waittime"
)

// TestWaitMemorySize drives the wait target's sizing pass by pass: the
// hold while the model is unknown, the model once two passes measured a
// rate and a service time, the start-up median, a backlog-only source,
// and the fall to min after a minute without work.
func TestWaitMemorySize(t *testing.T) {
	p := QWorkerDefaults(1, 50, 0.1)
	target := waittime.Target{Wait: 5 * time.Second, Percentile: 0.95}
	type pass struct {
		name     string
		advance  time.Duration
		queue    QueueReading
		done     int64 // tasks finished (1 s each) since the previous pass
		unknown  bool  // completions unknown (no worker reported)
		startups []time.Duration
		previous int32
		want     int32
		state    WaitState
		startup  time.Duration // the model's start-up time, when modelled
	}
	passes := []pass{
		{name: "first pass: no rate yet, the larger of previous and scalingFactor", queue: QueueReading{Ready: 30}, unknown: true, previous: 2, want: 3, state: WaitUnknown},
		{name: "no report: scalingFactor grows it", advance: time.Second, queue: QueueReading{Ready: 100}, unknown: true, previous: 3, want: 10, state: WaitUnknown},
		{name: "workers report", advance: time.Second, queue: QueueReading{}, previous: 10, want: 10, state: WaitUnknown},
		// 10 tasks/s of 1 s each, none waiting: Erlang C's 11 for p95 ≤ 5 s
		// (start-up unknown, so the steady part is sized).
		{name: "modelled", advance: time.Second, done: 10, previous: 10, want: 11, state: WaitModelled},
		{name: "start-up is the median of the newest five", advance: time.Second, done: 10, previous: 11, want: -1, state: WaitModelled,
			startups: []time.Duration{3 * time.Second, 9 * time.Second, time.Second, 2 * time.Second, 4 * time.Second, time.Hour}, startup: 3 * time.Second},
		{name: "no start-up this pass keeps the last", advance: time.Second, done: 10, previous: 11, want: -1, state: WaitModelled, startup: 3 * time.Second},
		{name: "a backlog-only source counts as waiting", advance: time.Second, done: 10, queue: QueueReading{Backlog: 500}, previous: 11, want: 50, state: WaitModelled},
		{name: "under a minute idle: modelled", advance: 59 * time.Second, previous: 11, want: -1, state: WaitModelled},
		{name: "a minute without work: min", advance: time.Second, previous: 11, want: 1, state: WaitIdle},
	}
	var m WaitMemory
	now := time.Unix(1000, 0)
	var tasks int64
	for _, ps := range passes {
		now = now.Add(ps.advance)
		tasks += ps.done
		got := m.Size(now, p, target, 0, ps.previous, WaitReading{Queue: ps.queue, Completed: tasks, BusySeconds: float64(tasks),
			HasCompleted: !ps.unknown, Concurrency: 1, Startups: ps.startups, Active: ps.previous})
		if got.State != ps.state || (ps.want >= 0 && got.Raw != ps.want) {
			t.Fatalf("%s: raw %d state %d, want %d state %d (%s)", ps.name, got.Raw, got.State, ps.want, ps.state, got.Result.Reason)
		}
		if ps.startup > 0 && got.Inputs.StartupTime != ps.startup {
			t.Fatalf("%s: start-up %v, want %v", ps.name, got.Inputs.StartupTime, ps.startup)
		}
		if got.Raw < p.Sizing.MinReplicas || got.Raw > p.Sizing.MaxReplicas {
			t.Fatalf("%s: raw %d outside [%d, %d]", ps.name, got.Raw, p.Sizing.MinReplicas, p.Sizing.MaxReplicas)
		}
	}
}

// TestWaitIdleAfterFollowsSlowTasks: a pool of 40 s tasks may finish none
// for a minute while busy, so it counts as idle only after three service
// times.
func TestWaitIdleAfterFollowsSlowTasks(t *testing.T) {
	var m WaitMemory
	p := QWorkerDefaults(0, 10, 1)
	now := time.Unix(1000, 0)
	for i := range 3 {
		m.Size(now.Add(time.Duration(i)*time.Second), p, waittime.Target{Wait: 30 * time.Second}, 0, 1,
			WaitReading{Completed: int64(i), BusySeconds: 40 * float64(i), HasCompleted: true, Concurrency: 1, Active: 1})
	}
	if got := m.IdleAfter(now.Add(2 * time.Second)); got != 120*time.Second {
		t.Fatalf("IdleAfter = %v, want 2m0s (three 40 s service times)", got)
	}
	if got := (&WaitMemory{}).IdleAfter(now); got != WaitIdleAfter {
		t.Fatalf("IdleAfter with no service time = %v, want %v", got, WaitIdleAfter)
	}
}

// TestWaitMemorySizeSustainedFloor: Size hands the estimator's sustained
// rate to the model, whose scale-down keeps the workers that rate keeps
// busy. Four minutes of 2 tasks/s of 10 s each, with the queue empty and
// nothing in flight at every pass, keep 20 of 30 workers; before three
// one-minute windows are seen there is no sustained rate and no floor.
func TestWaitMemorySizeSustainedFloor(t *testing.T) {
	p := QWorkerDefaults(1, 50, 0.1)
	target := waittime.Target{Wait: time.Minute}
	const step = 5 * time.Second
	for _, tc := range []struct {
		name     string
		steps    int
		wantRate float64
		want     int32
	}{
		{"one minute: no sustained rate yet", 12, 0, 1},
		{"four minutes: the sustained rate's workers stay", 48, 2, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m WaitMemory
			now := time.Unix(1000, 0)
			var got WaitSized
			for i := 1; i <= tc.steps; i++ {
				tasks := int64(i) * 10 // 2/s
				got = m.Size(now.Add(time.Duration(i)*step), p, target, step, 30, WaitReading{
					Completed: tasks, BusySeconds: float64(tasks) * 10, HasCompleted: true, Concurrency: 1,
					Startups: []time.Duration{20 * time.Second}, Active: 30})
			}
			if got.Inputs.SustainedRate != got.Estimate.SustainedRate {
				t.Fatalf("inputs carry sustained rate %g, estimate %g", got.Inputs.SustainedRate, got.Estimate.SustainedRate)
			}
			if d := got.Inputs.SustainedRate - tc.wantRate; d < -1e-9 || d > 1e-9 {
				t.Fatalf("sustained rate %g, want %g", got.Inputs.SustainedRate, tc.wantRate)
			}
			if got.State != WaitModelled || got.Raw != tc.want {
				t.Fatalf("raw %d state %d, want %d modelled (%s)", got.Raw, got.State, tc.want, got.Result.Reason)
			}
		})
	}
}
