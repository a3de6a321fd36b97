package sim

import (
	"testing"
)

// BenchmarkSimulate reports how many simulated hours one wall-clock second
// covers, per policy, on the 24-hour diurnal scenario (~225k tasks).
func BenchmarkSimulate(b *testing.B) {
	sc := loadExample(b, "diurnal")
	for _, p := range AllPolicies {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Run(sc, []string{p}, sc.Seed); err != nil {
					b.Fatal(err)
				}
			}
			hours := sc.Duration.Seconds() / 3600 * float64(b.N)
			b.ReportMetric(hours/b.Elapsed().Seconds(), "simhours/s")
		})
	}
}

// BenchmarkSwellDecision measures one swell policy evaluation as the
// simulator makes it on every enqueue: sizing plus stabilisation.
func BenchmarkSwellDecision(b *testing.B) {
	sc := loadExample(b, "steady")
	s := newSwell(sc.Policies.Swell, sc.Workers)
	r := newRun(sc, nil, s)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.now = float64(i) * 0.5
		r.inFlight = i % 40
		s.tick(r)
	}
}

// BenchmarkSwellWaitDecision measures one swell-wait evaluation as the
// simulator makes it every poll: estimator, model, fallback and behavior.
func BenchmarkSwellWaitDecision(b *testing.B) {
	sc := loadExample(b, "steady")
	if err := sc.Policies.validate(); err != nil {
		b.Fatal(err)
	}
	s := newSwellWait(sc.Policies.SwellWait, sc.Workers)
	r := newRun(sc, nil, s)
	r.startups = []float64{20, 21, 19}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.now = float64(i) * 5
		r.inFlight = 15 + i%10
		r.completed += 10
		r.busySeconds += 100
		s.tick(r)
	}
}

// BenchmarkEqualWait sweeps the bursty scenario and reports each policy's
// pod-hours at keda's default p95 (the figures of the README table) next
// to the time one sweep takes.
func BenchmarkEqualWait(b *testing.B) {
	sc := loadExample(b, "bursty")
	var sw *Sweep
	for b.Loop() {
		var err error
		if sw, err = SweepScenario(sc, AllPolicies, sc.Seed); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(sw.RefP95, "p95-s")
	for _, p := range []string{PolicyKeda, PolicySwell, PolicySwellWait, PolicyOracle} {
		b.ReportMetric(sw.AtRef[p], p+"-pod-h")
	}
}
