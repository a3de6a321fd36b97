package waittime

import (
	"encoding/binary"
	"math"
	"testing"
	"time"
)

// FuzzReplicas feeds arbitrary, absurd and missing inputs to the model: the
// answer is a count in range, holds on unknown inputs, and carries no NaN.
func FuzzReplicas(f *testing.F) {
	f.Add(2.0, int64(10e9), 1, int64(0), int64(0), int64(0), int64(20e9), 0, 0, int64(5e9), 0.95, 0.0)
	f.Add(math.NaN(), int64(0), 0, int64(-5), int64(-1), int64(-1), int64(-1), -3, -1, int64(0), 1.5, -1.0)
	f.Add(1e300, int64(math.MaxInt64), 1<<30, int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64), math.MaxInt32, 5, int64(1), 0.999999, 1.0)
	f.Add(math.Inf(1), int64(1), 1, int64(1), int64(0), int64(0), int64(0), 1, 0, int64(1), 0.0, 0.0)
	f.Add(5e-324, int64(1), 2, int64(1), int64(0), int64(1<<40), int64(0), 0, 0, int64(math.MaxInt64), 1e-9, 1e-9)
	f.Fuzz(func(t *testing.T, rate float64, svc int64, conc int, backlog, inflight, age, startup int64, current, maxR int, wait int64, p, margin float64) {
		in := Inputs{ArrivalRate: rate, SustainedRate: rate, ServiceTime: time.Duration(svc), Concurrency: conc, Backlog: backlog, InFlight: inflight,
			OldestAge: time.Duration(age), StartupTime: time.Duration(startup), Current: current, MaxReplicas: maxR}
		tg := Target{Wait: time.Duration(wait), Percentile: p, ScaleDownMargin: margin}
		r := Replicas(in, tg)
		if r.Replicas < 0 {
			t.Fatalf("negative replicas %d for %+v %+v", r.Replicas, in, tg)
		}
		if !r.Known {
			if r.Replicas != max(current, 0) {
				t.Fatalf("unknown inputs changed the count %d → %d: %s", current, r.Replicas, r.Reason)
			}
			return
		}
		if maxR > 0 && r.Replicas > maxR {
			t.Fatalf("replicas %d above maxReplicas %d", r.Replicas, maxR)
		}
		if limit := max(MaxServers/min(max(conc, 1), MaxServers), 1); r.Replicas > limit {
			t.Fatalf("replicas %d above %d (MaxServers at concurrency %d)", r.Replicas, limit, conc)
		}
		if r.PredictedWait < 0 {
			t.Fatalf("negative predicted wait %v", r.PredictedWait)
		}
		if backlog > 0 && r.Replicas == 0 {
			t.Fatalf("backlog %d waiting but model says zero workers: %s", backlog, r.Reason)
		}
	})
}

// FuzzEstimator drives the estimator with arbitrary observation sequences
// (counter resets, clocks going back, huge and negative values) and feeds
// every estimate to the model: no NaN leaks into a rate, a service time or
// a replica count, and an unknown estimate never scales to zero.
func FuzzEstimator(f *testing.F) {
	f.Add([]byte{}, int64(0))
	f.Add([]byte("\x01\x00\x00\x00\x00\x00\x00\x10\x05\x00\x00\x00\x00\x00\x00\x00\x0a"), int64(30e9))
	f.Add([]byte("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"), int64(-1))
	f.Fuzz(func(t *testing.T, data []byte, halfLife int64) {
		e := Estimator{HalfLife: time.Duration(halfLife)}
		now := t0
		const rec = 17
		for len(data) >= rec {
			dt := time.Duration(int8(data[0])) * time.Second
			backlog := int64(binary.LittleEndian.Uint32(data[1:5])) - 1<<31
			done := int64(binary.LittleEndian.Uint64(data[5:13]))
			busy := math.Float32frombits(binary.LittleEndian.Uint32(data[13:17]))
			flags := data[0]
			data = data[rec:]
			now = now.Add(dt)
			e.Observe(now, Observation{Backlog: backlog, Completed: done, HasCompleted: flags&1 == 0,
				BusySeconds: float64(busy), HasBusy: flags&2 == 0, Arrived: done, HasArrived: flags&4 != 0})
			est := e.Estimate(now)
			if est.Known && (math.IsNaN(est.ArrivalRate) || est.ArrivalRate < 0 || math.IsInf(est.ArrivalRate, 0) || est.ServiceTime <= 0) {
				t.Fatalf("known estimate with bad figures: %+v", est)
			}
			r := Replicas(Inputs{ArrivalRate: est.ArrivalRate, SustainedRate: est.SustainedRate, ServiceTime: est.ServiceTime, Concurrency: 2, Backlog: backlog, Current: 3, MaxReplicas: 100},
				Target{Wait: 5 * time.Second})
			if r.Known != est.Known && est.Known {
				t.Fatalf("known estimate %+v rejected: %s", est, r.Reason)
			}
			if !r.Known && r.Replicas != 3 {
				t.Fatalf("unknown estimate moved the pool to %d", r.Replicas)
			}
			if r.Replicas < 0 || r.Replicas > 100 {
				t.Fatalf("replicas %d outside [0, 100]", r.Replicas)
			}
		}
	})
}
