package waittime

import (
	"testing"
	"time"
)

// BenchmarkReplicasErlang measures one decision in the Erlang regime at
// 200 busy slots (the server search walks ~215 Erlang B steps, twice for
// the scale-down band).
func BenchmarkReplicasErlang(b *testing.B) {
	in := Inputs{ArrivalRate: 20, ServiceTime: 10 * time.Second, Concurrency: 1, Backlog: 50, Current: 260, StartupTime: 30 * time.Second}
	tg := Target{Wait: 5 * time.Second}
	b.ReportAllocs()
	for b.Loop() {
		if r := Replicas(in, tg); !r.Known {
			b.Fatal(r.Reason)
		}
	}
}

// BenchmarkReplicasOnDemand measures one decision in the on-demand regime.
func BenchmarkReplicasOnDemand(b *testing.B) {
	in := Inputs{ArrivalRate: 20, ServiceTime: 10 * time.Second, Concurrency: 1, Backlog: 50, Current: 260, StartupTime: 20 * time.Second, PollInterval: 5 * time.Second}
	tg := Target{Wait: time.Minute}
	b.ReportAllocs()
	for b.Loop() {
		if r := Replicas(in, tg); !r.Known {
			b.Fatal(r.Reason)
		}
	}
}

// BenchmarkEstimatorObserve measures folding one observation in.
func BenchmarkEstimatorObserve(b *testing.B) {
	var e Estimator
	at := time.Unix(0, 0)
	o := Observation{HasCompleted: true, HasBusy: true}
	b.ReportAllocs()
	for b.Loop() {
		at = at.Add(5 * time.Second)
		o.Completed += 10
		o.BusySeconds += 100
		e.Observe(at, o)
	}
}
