package waittime

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// A steady queue of 3 tasks/s, 4 s each, observed every 10 s: backlog
// constant, completions at the arrival rate.
func TestEstimatorSteady(t *testing.T) {
	var e Estimator
	if e.Estimate(t0).Known {
		t.Fatal("known before any observation")
	}
	for i := range 30 {
		done := int64(30 * i)
		e.Observe(t0.Add(time.Duration(i)*10*time.Second), Observation{Backlog: 5, InFlight: 12,
			Completed: done, HasCompleted: true, BusySeconds: 4 * float64(done), HasBusy: true})
	}
	est := e.Estimate(t0.Add(290 * time.Second))
	if !est.Known || math.Abs(est.ArrivalRate-3) > 1e-9 || est.ServiceTime != 4*time.Second {
		t.Fatalf("estimate %+v, want 3/s and 4s", est)
	}
	if e.Estimate(t0.Add(290*time.Second + DefaultStaleAfter + time.Second)).Known {
		t.Fatal("estimate still known after StaleAfter without observations")
	}
}

// Backlog growth counts as arrivals; the smoothed rate moves toward a step
// by half within one half-life.
func TestEstimatorFollowsStep(t *testing.T) {
	e := Estimator{HalfLife: 30 * time.Second, Growth: -1}
	obs := Observation{HasCompleted: true, HasBusy: true}
	at := t0
	step := func(arrivals, done int64) {
		at = at.Add(10 * time.Second)
		obs.Backlog += arrivals - done
		obs.Completed += done
		obs.BusySeconds += float64(done)
		e.Observe(at, obs)
	}
	e.Observe(at, obs)
	for range 10 {
		step(10, 10) // 1/s
	}
	for range 3 {
		step(50, 10) // 5/s, backlog grows
	}
	got := e.Estimate(at).ArrivalRate
	if math.Abs(got-3) > 1e-9 { // halfway from 1 to 5 after 30 s
		t.Fatalf("rate after one half-life of a 1→5/s step = %g, want 3", got)
	}
}

func TestEstimatorPrefersArrivalCounter(t *testing.T) {
	var e Estimator
	e.Observe(t0, Observation{Arrived: 100, HasArrived: true, Backlog: 50})
	e.Observe(t0.Add(10*time.Second), Observation{Arrived: 160, HasArrived: true, Backlog: 0})
	if got := e.Estimate(t0.Add(10 * time.Second)).ArrivalRate; got != 6 {
		t.Fatalf("rate = %g, want 6 from the log-end offset", got)
	}
}

// Counter resets, time going backwards and tasks leaving without
// completing never produce a negative or NaN estimate.
func TestEstimatorBadSequences(t *testing.T) {
	var e Estimator
	e.Observe(t0, Observation{Completed: 1000, HasCompleted: true, BusySeconds: 5000, HasBusy: true, Backlog: 900})
	e.Observe(t0.Add(-time.Minute), Observation{Completed: 0, HasCompleted: true})                                // clock went back
	e.Observe(t0.Add(10*time.Second), Observation{Completed: 3, HasCompleted: true, HasBusy: true, Backlog: 900}) // worker restart: counter reset
	if est := e.Estimate(t0.Add(10 * time.Second)); est.Known || !math.IsNaN(est.ArrivalRate) {
		t.Fatalf("reset counter produced an estimate %+v", est)
	}
	e.Observe(t0.Add(20*time.Second), Observation{Completed: 13, HasCompleted: true, BusySeconds: 20, HasBusy: true, Backlog: 0})
	est := e.Estimate(t0.Add(20 * time.Second))
	if !est.Known || est.ArrivalRate != 0 || est.ServiceTime != 2*time.Second {
		t.Fatalf("purged backlog: estimate %+v, want rate 0 (not negative) and 2s", est)
	}
}

// A one-off burst raises the rate by at most Growth × estimate + one task
// per interval; the burst itself stays in the backlog, which the model
// drains separately.
func TestEstimatorBoundsBursts(t *testing.T) {
	e := Estimator{HalfLife: time.Nanosecond} // no smoothing: see the bound alone
	obs := Observation{HasCompleted: true}
	at := t0
	e.Observe(at, obs)
	for range 3 { // 1 task/s
		at = at.Add(10 * time.Second)
		obs.Completed += 10
		e.Observe(at, obs)
	}
	at = at.Add(10 * time.Second)
	obs.Backlog += 2000 // a batch of 2000 lands
	obs.Completed += 10
	e.Observe(at, obs)
	if got, want := e.Estimate(at).ArrivalRate, 2*1.0+0.1; math.Abs(got-want) > 1e-9 {
		t.Fatalf("rate after a 2000-task burst = %g, want the bound %g", got, want)
	}
	for range 6 { // a real ramp to 20/s is followed within a few intervals
		at = at.Add(10 * time.Second)
		obs.Completed += 200
		e.Observe(at, obs)
	}
	if got := e.Estimate(at).ArrivalRate; got != 20 {
		t.Fatalf("rate after six intervals at 20/s = %g, want 20", got)
	}
}

// The sustained rate sees tasks that arrive in lumps, which the growth
// bound reads as a trickle, and ignores a one-off batch or a stop: ten
// minutes observed every 5 s, arrivals from the broker's counter.
func TestEstimatorSustainedRate(t *testing.T) {
	const step, steps = 5 * time.Second, 120
	lumps := func(i int) int64 { // 120 tasks at the start of every minute: 2/s
		if i%12 == 0 {
			return 120
		}
		return 0
	}
	for _, tc := range []struct {
		name           string
		window         time.Duration
		arrivals       func(i int) int64 // tasks arriving in the step ending at i
		rateLo, rateHi float64           // Estimate.ArrivalRate
		susLo, susHi   float64           // Estimate.SustainedRate
	}{
		{"lumps once a minute read as their mean", 0, lumps, 2, 2, 2, 2},
		{"lumps without the sustained rate read as a trickle", -1, lumps, 0, 0.5, 0, 0},
		{"a steady flow is unchanged", 0, func(int) int64 { return 10 }, 2, 2, 2, 2},
		{"a one-off batch is not sustained", 0, func(i int) int64 {
			if i == 100 {
				return 2000
			}
			return 1
		}, 0.2, 30, 0.2, 0.2},
		{"a stop is seen within a window", 0, func(i int) int64 {
			if i < 100 {
				return 10
			}
			return 0
		}, 0, 0.5, 0, 0}, // the smoothed rate decays by half every 30 s
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Estimator{SustainedWindow: tc.window}
			obs := Observation{HasArrived: true, HasCompleted: true, HasBusy: true}
			at := t0
			e.Observe(at, obs)
			for i := 1; i <= steps; i++ {
				at = at.Add(step)
				obs.Arrived += tc.arrivals(i)
				obs.Completed++
				obs.BusySeconds += 12
				e.Observe(at, obs)
			}
			est := e.Estimate(at)
			if !est.Known || est.ArrivalRate < tc.rateLo-1e-9 || est.ArrivalRate > tc.rateHi+1e-9 {
				t.Fatalf("arrival rate %g (known %v), want [%g, %g]", est.ArrivalRate, est.Known, tc.rateLo, tc.rateHi)
			}
			if est.SustainedRate < tc.susLo-1e-9 || est.SustainedRate > tc.susHi+1e-9 {
				t.Fatalf("sustained rate %g, want [%g, %g]", est.SustainedRate, tc.susLo, tc.susHi)
			}
		})
	}
}

// The sustained rate needs three windows of history, each at least half
// covered by intervals whose arrivals are known; before that it is 0 and
// the estimate is the smoothed rate alone.
func TestEstimatorSustainedNeedsHistory(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps int
		gap   bool // arrivals unknown for the middle two minutes
		want  float64
	}{
		{"two minutes are too short", 24, false, 0},
		{"three minutes", 37, false, 2},
		{"a window without known arrivals", 48, true, 0},
		{"known again for three windows", 48 + 37, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e Estimator
			obs := Observation{HasArrived: true, HasCompleted: true, HasBusy: true}
			at := t0
			e.Observe(at, obs)
			for i := 1; i <= tc.steps; i++ {
				at = at.Add(5 * time.Second)
				obs.Arrived += 10
				obs.Completed++
				obs.BusySeconds += 12
				obs.HasArrived = !tc.gap || i <= 12 || i > 36
				obs.HasCompleted = obs.HasArrived
				e.Observe(at, obs)
			}
			if got := e.Estimate(at).SustainedRate; got != tc.want {
				t.Fatalf("sustained rate %g, want %g", got, tc.want)
			}
		})
	}
}
