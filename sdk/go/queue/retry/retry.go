// Package retry is the retry policy Swell's Go queue consumers share
// (rabbitq, kafkaq): how many failures send a task to the dead-letter
// destination, and how long a failed task waits before it is taken again,
// doubling per failure. redisq applies the same rule inside Redis.
package retry

import "time"

// Defaults of Policy, the same on every broker.
const (
	DefaultMaxAttempts = 5
	DefaultBackoff     = time.Second
	DefaultMaxBackoff  = time.Minute
)

// Policy says when a failing task is dead-lettered and how long it waits
// between attempts.
type Policy struct {
	// MaxAttempts is how many failures dead-letter a task; 0 means
	// DefaultMaxAttempts, negative means never.
	MaxAttempts int
	// Backoff is the wait after the first failure, doubled per failure up
	// to MaxBackoff; 0 means DefaultBackoff, negative means no wait.
	Backoff time.Duration
	// MaxBackoff caps the wait; 0 or negative means DefaultMaxBackoff.
	MaxBackoff time.Duration
}

// WithDefaults fills the zero fields.
func (p Policy) WithDefaults() Policy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.Backoff == 0 {
		p.Backoff = DefaultBackoff
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = DefaultMaxBackoff
	}
	return p
}

// Dead reports whether failure number n (1 = first) dead-letters the task.
func (p Policy) Dead(n int) bool { return p.MaxAttempts > 0 && n >= p.MaxAttempts }

// Wait is the backoff after failure number n (1 = first): Backoff doubled
// n-1 times, at most MaxBackoff; 0 when Backoff is negative.
func (p Policy) Wait(n int) time.Duration {
	if p.Backoff <= 0 {
		return 0
	}
	d := p.Backoff
	for i := 1; i < n && d < p.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, p.MaxBackoff)
}
