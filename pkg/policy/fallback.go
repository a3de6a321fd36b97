package policy

import "fmt"

// Fallback says what to do when a metric source keeps failing. QScaler reads
// a failed Redis call as a backlog of -1 and scales to its minimum, possibly
// zero, exactly when nobody can see the queue; Swell holds instead.
type Fallback struct {
	// FailureThreshold is how many consecutive failures are tolerated
	// before Replicas applies; below it the current count is held.
	FailureThreshold int
	// Replicas, when > 0, is the count to run once the threshold is
	// reached; 0 means keep holding the current count.
	Replicas int32
}

// Validate reports a fallback that could not be honoured.
func (f Fallback) Validate() error {
	if f.FailureThreshold < 1 {
		return fmt.Errorf("fallback.failureThreshold %d: must be >= 1", f.FailureThreshold)
	}
	if f.Replicas < 0 {
		return fmt.Errorf("fallback.replicas %d: must be >= 0 (0 = hold current)", f.Replicas)
	}
	return nil
}

// FallbackGuard tracks consecutive source failures for one scaled object.
type FallbackGuard struct {
	Policy   Fallback
	failures int
}

// Failures is the current run of consecutive failures.
func (g *FallbackGuard) Failures() int { return g.failures }

// Apply turns one measurement outcome into a count. On success it resets the
// failure run and passes desired through. On failure it holds current, or,
// once the threshold is reached and Policy.Replicas is set, returns that
// count. A failure therefore never yields zero unless the pool already sits
// at zero.
func (g *FallbackGuard) Apply(current, desired int32, measureErr error) (replicas int32, fallingBack bool) {
	if measureErr == nil {
		g.failures = 0
		return desired, false
	}
	g.failures++
	if g.failures < max(g.Policy.FailureThreshold, 1) || g.Policy.Replicas <= 0 {
		return current, true
	}
	return g.Policy.Replicas, true
}
