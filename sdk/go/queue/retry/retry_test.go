package retry

import (
	"testing"
	"time"
)

func TestWaitDoublesUpToTheCap(t *testing.T) {
	p := Policy{Backoff: time.Second, MaxBackoff: 5 * time.Second}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 5 * time.Second, 50: 5 * time.Second} {
		if got := p.Wait(n); got != want {
			t.Errorf("wait after failure %d = %v, want %v", n, got, want)
		}
	}
	if got := (Policy{Backoff: -1}).Wait(3); got != 0 {
		t.Errorf("negative backoff waits %v, want 0", got)
	}
}

func TestDefaultsAndDead(t *testing.T) {
	for name, tc := range map[string]struct {
		p        Policy
		deadAt   int // first failure that dead-letters; 0: none of the first 100
		firstGap time.Duration
	}{
		"zero: the defaults":          {p: Policy{}, deadAt: DefaultMaxAttempts, firstGap: DefaultBackoff},
		"three attempts":              {p: Policy{MaxAttempts: 3}, deadAt: 3, firstGap: DefaultBackoff},
		"never dead-letter, no wait":  {p: Policy{MaxAttempts: -1, Backoff: -1}, deadAt: 0, firstGap: 0},
		"one attempt, custom backoff": {p: Policy{MaxAttempts: 1, Backoff: 3 * time.Second}, deadAt: 1, firstGap: 3 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			p := tc.p.WithDefaults()
			deadAt := 0
			for n := 1; n <= 100 && deadAt == 0; n++ {
				if p.Dead(n) {
					deadAt = n
				}
			}
			if deadAt != tc.deadAt || p.Wait(1) != tc.firstGap || p.MaxBackoff != DefaultMaxBackoff {
				t.Fatalf("%+v: dead at failure %d, first wait %v, cap %v; want %d, %v, %v", p, deadAt, p.Wait(1), p.MaxBackoff, tc.deadAt, tc.firstGap, DefaultMaxBackoff)
			}
		})
	}
}
