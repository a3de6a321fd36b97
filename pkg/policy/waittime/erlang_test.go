package waittime

import (
	"math"
	"testing"
	"time"
)

// Published Erlang C values (probability of waiting), e.g. the tables in
// Cooper, "Introduction to Queueing Theory", and the closed form
// C(c, a) = (a^c/c!)(c/(c−a)) / (Σ_{k<c} a^k/k! + (a^c/c!)(c/(c−a))).
func TestErlangCTable(t *testing.T) {
	for _, tc := range []struct {
		c    int
		a    float64
		want float64
	}{
		{1, 0.5, 0.5}, // M/M/1: P(wait) = ρ
		{2, 1, 1.0 / 3},
		{3, 2, 0.444444},
		{5, 4, 0.554113},
		{11, 10, 0.682118},
		{12, 10, 0.449388},
		{13, 10, 0.285270},
		{14, 10, 0.174132},
		{20, 15, 0.160429},
		{50, 45, 0.363864},
		{100, 90, 0.216940},
		{4, 0, 0}, // no load: nobody waits
		{4, 4, 1}, // saturated
		{4, 9, 1}, // unstable
		{0, 1, 1}, // no servers
	} {
		if got := ErlangC(tc.c, tc.a); math.Abs(got-tc.want) > 5e-6 {
			t.Errorf("ErlangC(%d, %g) = %.6f, want %.6f", tc.c, tc.a, got, tc.want)
		}
	}
}

// For M/M/1 the wait quantile has the closed form ln(ρ/(1−p)) / (μ − λ).
func TestWaitQuantileMM1(t *testing.T) {
	for _, tc := range []struct {
		lambda float64
		s      time.Duration
		p      float64
	}{
		{0.5, time.Second, 0.95},
		{0.9, time.Second, 0.95},
		{0.09, 10 * time.Second, 0.99},
		{0.04, 10 * time.Second, 0.5},
	} {
		mu := 1 / tc.s.Seconds()
		rho := tc.lambda / mu
		want := math.Max(0, math.Log(rho/(1-tc.p))/(mu-tc.lambda))
		if got := WaitQuantile(1, tc.lambda, tc.s, tc.p); math.Abs(got-want) > 1e-9 {
			t.Errorf("WaitQuantile(1, %g, %v, %g) = %g, want %g", tc.lambda, tc.s, tc.p, got, want)
		}
	}
	if got := WaitQuantile(3, 1, 3*time.Second, 0.95); !math.IsInf(got, 1) {
		t.Errorf("saturated queue: WaitQuantile = %g, want +Inf", got)
	}
}

// The M/M/c tail P(W > t) = C·exp(−(cμ − λ)t) evaluated at the quantile
// returns exactly 1 − p.
func TestWaitQuantileInvertsTail(t *testing.T) {
	for _, c := range []int{2, 5, 12, 40} {
		lambda, s, p := float64(c)*0.85/10, 10*time.Second, 0.95
		q := WaitQuantile(c, lambda, s, p)
		if q <= 0 {
			t.Fatalf("c=%d: quantile %g, want > 0 at 85%% load", c, q)
		}
		tail := ErlangC(c, lambda*s.Seconds()) * math.Exp(-(float64(c)/s.Seconds()-lambda)*q)
		if math.Abs(tail-(1-p)) > 1e-12 {
			t.Errorf("c=%d: tail at quantile = %g, want %g", c, tail, 1-p)
		}
	}
}

// ServersFor returns the smallest c meeting the target: c meets it, c−1
// does not.
func TestServersForIsMinimal(t *testing.T) {
	for _, tc := range []struct {
		lambda float64
		s, w   time.Duration
		p      float64
		want   int
	}{
		// 10 erlangs, p80 wait ≤ 0: needs C ≤ 0.2, first reached at c=14
		// (C(13,10)=0.285, C(14,10)=0.174; table above).
		{1, 10 * time.Second, 0, 0.8, 14},
		{0, 10 * time.Second, time.Second, 0.95, 0},
	} {
		got, ok := ServersFor(tc.lambda, tc.s, tc.w, tc.p, 1000)
		if !ok || got != tc.want {
			t.Errorf("ServersFor(%g, %v, %v, %g) = %d, %v; want %d", tc.lambda, tc.s, tc.w, tc.p, got, ok, tc.want)
		}
	}
	for _, lambda := range []float64{0.05, 0.5, 2, 7.3, 40} {
		for _, w := range []time.Duration{0, time.Second, 5 * time.Second, time.Minute} {
			c, ok := ServersFor(lambda, 10*time.Second, w, 0.95, MaxServers)
			if !ok {
				t.Fatalf("λ=%g w=%v: no answer", lambda, w)
			}
			if q := WaitQuantile(c, lambda, 10*time.Second, 0.95); q > w.Seconds() {
				t.Errorf("λ=%g w=%v: c=%d predicts %gs", lambda, w, c, q)
			}
			if q := WaitQuantile(c-1, lambda, 10*time.Second, 0.95); q <= w.Seconds() {
				t.Errorf("λ=%g w=%v: c−1=%d already meets it (%gs)", lambda, w, c-1, q)
			}
		}
	}
	if c, ok := ServersFor(1e12, time.Second, time.Second, 0.95, 50); ok || c != 50 {
		t.Errorf("absurd load: ServersFor = %d, %v; want 50, false", c, ok)
	}
}
