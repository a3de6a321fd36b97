// Package demo runs Swell's local demonstration: a load generator with a
// changing arrival rate, a worker that uses the Go SDK, and a live terminal
// view of the scaling, all against the real local cluster of `swell-dev`.
package demo

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Phase is one stretch of the demo's load: Rate tasks per second for Length.
type Phase struct {
	Name   string
	Rate   float64
	Length time.Duration
}

// DefaultPhases ramp up, hold a peak, burst, and go quiet, so a person sees
// the pool grow, settle, jump and drain within a few minutes.
func DefaultPhases() []Phase {
	return []Phase{
		{Name: "warm-up", Rate: 2, Length: 30 * time.Second},
		{Name: "ramp", Rate: 10, Length: 45 * time.Second},
		{Name: "peak", Rate: 25, Length: 45 * time.Second},
		{Name: "quiet", Rate: 0, Length: 45 * time.Second},
		{Name: "burst", Rate: 40, Length: 15 * time.Second},
		{Name: "quiet", Rate: 0, Length: 60 * time.Second},
	}
}

// PhaseAt is the phase in effect at elapsed time t; the schedule repeats.
func PhaseAt(phases []Phase, t time.Duration) Phase {
	var total time.Duration
	for _, p := range phases {
		total += p.Length
	}
	if total <= 0 {
		return Phase{Name: "idle"}
	}
	t %= total
	for _, p := range phases {
		if t < p.Length {
			return p
		}
		t -= p.Length
	}
	return phases[len(phases)-1]
}

// Load pushes tasks onto a Redis list at the schedule's rate (LPUSH, as
// QScaler's producers do), counting what it sent.
type Load struct {
	RDB    *redis.Client
	Queue  string
	Phases []Phase
	// Sent counts tasks pushed; Phase is the current phase's name.
	Sent  atomic.Int64
	phase atomic.Value
}

// CurrentPhase is the phase the generator is in.
func (l *Load) CurrentPhase() Phase {
	if p, ok := l.phase.Load().(Phase); ok {
		return p
	}
	return Phase{Name: "starting"}
}

// Run pushes tasks until ctx ends, ten times a second.
func (l *Load) Run(ctx context.Context, start time.Time) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	owed := 0.0
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			p := PhaseAt(l.Phases, now.Sub(start))
			l.phase.Store(p)
			owed += p.Rate / 10
			n := int(math.Floor(owed))
			owed -= float64(n)
			if err := l.push(ctx, n); err != nil && ctx.Err() == nil {
				return err
			}
		}
	}
}

func (l *Load) push(ctx context.Context, n int) error {
	if n == 0 {
		return nil
	}
	vals := make([]any, n)
	for i := range vals {
		vals[i] = fmt.Sprintf("task-%d", l.Sent.Add(1))
	}
	if err := l.RDB.LPush(ctx, l.Queue, vals...).Err(); err != nil {
		return fmt.Errorf("push %d tasks to %s: %w", n, l.Queue, err)
	}
	return nil
}
