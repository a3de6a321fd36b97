package policy

import (
	"fmt"
	"math"
)

// ceilEpsilon absorbs floating-point noise before rounding up, so that a
// backlog of 30 with a factor of 0.1 asks for 3 pods, not 4 (30*0.1 is
// 3.0000000000000004 in float64).
const ceilEpsilon = 1e-9

// ceilCount rounds x up to an integer replica count, saturating at
// math.MaxInt32 and treating NaN and negatives as zero, so no input can make
// a decision overflow.
func ceilCount(x float64) int32 {
	if math.IsNaN(x) || x <= 0 {
		return 0
	}
	c := math.Ceil(x - ceilEpsilon)
	if c >= math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(c)
}

// clamp bounds n to [lo, hi]. When lo > hi (a misconfiguration upstream CRDs
// accept), hi wins, so the result never exceeds the maximum.
func clamp(n, lo, hi int32) int32 {
	if n < lo {
		n = lo
	}
	if n > hi {
		n = hi
	}
	return n
}

// QueueSample is one measurement of a work queue. Queued is what a broker
// reports as waiting (Redis LLEN, stream lag, consumer-group lag); InFlight is
// what workers have taken but not finished. Both are counts of messages.
type QueueSample struct {
	Queued   int64
	InFlight int64
}

// QueueSizing sizes a worker pool from its queue, with QScaler's meaning of
// scalingFactor: pods per queued message. QScaler only accepts integers;
// Swell also accepts fractions (0.1 = one pod per ten messages) so that one
// field expresses both "fan out" and "batch" workers.
type QueueSizing struct {
	// MinReplicas is the floor when the queue is active. Zero enables scale
	// to zero when the queue is at or below the activation threshold.
	MinReplicas int32
	// MaxReplicas caps the pool; a queue burst never asks for more.
	MaxReplicas int32
	// ScalingFactor is pods per message; must be > 0.
	ScalingFactor float64
	// ActivationThreshold is the backlog at or below which the pool is
	// considered inactive: it stays at (or returns to) MinReplicas, which is
	// zero for scale-to-zero pools. This is KEDA's activation semantics and
	// stops a single stray message from waking a pool that has min 0.
	ActivationThreshold int64
	// CountInFlight adds in-flight messages to the backlog. QScaler counts
	// only queued messages (false); with true, busy workers are counted as
	// needed, so the pool does not shrink under workers that are mid-task.
	CountInFlight bool
}

// Validate reports configuration that can never produce a sensible decision,
// naming the field and what would be valid.
func (q QueueSizing) Validate() error {
	switch {
	case q.MinReplicas < 0:
		return fmt.Errorf("minReplicas %d: must be >= 0", q.MinReplicas)
	case q.MaxReplicas < 1:
		return fmt.Errorf("maxReplicas %d: must be >= 1", q.MaxReplicas)
	case q.MinReplicas > q.MaxReplicas:
		return fmt.Errorf("minReplicas %d > maxReplicas %d: min must not exceed max", q.MinReplicas, q.MaxReplicas)
	case !(q.ScalingFactor > 0) || math.IsInf(q.ScalingFactor, 0):
		return fmt.Errorf("scalingFactor %v: must be a finite number > 0 (pods per queued message)", q.ScalingFactor)
	case q.ActivationThreshold < 0:
		return fmt.Errorf("activationThreshold %d: must be >= 0", q.ActivationThreshold)
	}
	return nil
}

// Backlog is the message count the sizing acts on for s.
func (q QueueSizing) Backlog(s QueueSample) int64 {
	b := max(s.Queued, 0)
	if q.CountInFlight {
		b += max(s.InFlight, 0)
	}
	return b
}

// Active reports whether s wakes the pool (backlog above the activation
// threshold). An inactive pool sits at MinReplicas.
func (q QueueSizing) Active(s QueueSample) bool {
	return q.Backlog(s) > q.ActivationThreshold
}

// Desired is the replica count for s: ceil(backlog × scalingFactor) clamped
// to [MinReplicas, MaxReplicas], or MinReplicas when the queue is inactive.
// It is a pure function of the sample; smoothing belongs to a stabiliser.
func (q QueueSizing) Desired(s QueueSample) int32 {
	lo, hi := max(q.MinReplicas, 0), max(q.MaxReplicas, 0)
	if !q.Active(s) {
		return clamp(lo, lo, hi)
	}
	factor := q.ScalingFactor
	if !(factor > 0) {
		return clamp(lo, lo, hi)
	}
	n := ceilCount(float64(q.Backlog(s)) * factor)
	// An active queue always gets at least one worker, even when the
	// backlog times a tiny factor rounds to zero.
	return clamp(max(n, 1), lo, hi)
}
