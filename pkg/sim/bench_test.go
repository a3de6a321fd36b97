package sim

import (
	"testing"
)

// BenchmarkSimulate reports how many simulated hours one wall-clock second
// covers, per policy, on the 24-hour diurnal scenario (~225k tasks).
func BenchmarkSimulate(b *testing.B) {
	sc := loadExample(b, "diurnal")
	for _, p := range []string{PolicySwell, PolicyKeda, PolicyHPACPU, PolicyOracle} {
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
