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
