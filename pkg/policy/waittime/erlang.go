package waittime

import (
	"math"
	"time"
)

// MaxServers bounds every server search, so an absurd arrival rate costs a
// bounded loop and a bounded answer instead of hanging a reconcile.
const MaxServers = 1 << 20

// ErlangC is the probability that an arriving task has to wait at all in an
// M/M/c queue with c servers and offered load a (erlangs: arrival rate ×
// mean service time). It is 1 when the queue is unstable (a ≥ c) or c < 1,
// and 0 when a ≤ 0.
func ErlangC(c int, a float64) float64 {
	if c < 1 || math.IsNaN(a) || a >= float64(c) {
		return 1
	}
	if a <= 0 {
		return 0
	}
	b := erlangB(c, a)
	return erlangCFromB(c, a, b)
}

// erlangB is the Erlang B blocking probability by its stable recursion
// B(0)=1, B(k) = a·B(k−1) / (k + a·B(k−1)).
func erlangB(c int, a float64) float64 {
	b := 1.0
	for k := 1; k <= c; k++ {
		b = a * b / (float64(k) + a*b)
	}
	return b
}

// erlangCFromB converts Erlang B to Erlang C for a < c.
func erlangCFromB(c int, a, b float64) float64 {
	fc := float64(c)
	return fc * b / (fc - a*(1-b))
}

// WaitQuantile is the wait that a fraction p of tasks do not exceed in an
// M/M/c queue with c servers, arrival rate lambda (tasks/s) and mean service
// time s. It returns +Inf when the queue is unstable (λ·s ≥ c) and 0 when
// fewer than a fraction 1−p of tasks wait at all.
func WaitQuantile(c int, lambda float64, s time.Duration, p float64) float64 {
	sec := s.Seconds()
	a := lambda * sec
	if c < 1 || !(sec > 0) || math.IsNaN(a) || a >= float64(c) {
		return math.Inf(1)
	}
	return quantileFromC(ErlangC(c, a), c, lambda, sec, p)
}

// quantileFromC solves C·exp(−(c/s − λ)·t) = 1 − p for t.
func quantileFromC(pw float64, c int, lambda, sec, p float64) float64 {
	tail := 1 - p
	if pw <= tail {
		return 0
	}
	return math.Log(pw/tail) / (float64(c)/sec - lambda)
}

// ServersFor is the smallest number of servers c (at most limit) for which
// the p-quantile of the M/M/c wait is at most w, for arrival rate lambda
// (tasks/s) and mean service time s. The second result is false when even
// limit servers miss the target. A zero arrival rate needs no servers.
func ServersFor(lambda float64, s, w time.Duration, p float64, limit int) (int, bool) {
	sec := s.Seconds()
	a := lambda * sec
	limit = min(max(limit, 0), MaxServers)
	if !(a > 0) {
		return 0, true
	}
	if a >= float64(limit) {
		return limit, false
	}
	target := max(w.Seconds(), 0)
	// Walk the Erlang B recursion once, checking each c past the load.
	b := 1.0
	for c := 1; c <= limit; c++ {
		b = a * b / (float64(c) + a*b)
		if float64(c) <= a {
			continue
		}
		if quantileFromC(erlangCFromB(c, a, b), c, lambda, sec, p) <= target {
			return c, true
		}
	}
	return limit, false
}
