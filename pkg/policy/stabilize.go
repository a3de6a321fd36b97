package policy

import "time"

// DownscaleStabilizer is the Custom Pod Autoscaler's downscaleStabilization:
// the applied count is the highest decision made within the window, so
// scale-ups act at once and scale-downs wait until the window has forgotten
// the peak. A zero window passes decisions through.
type DownscaleStabilizer struct {
	// Window is how long a decision keeps the count up.
	Window  time.Duration
	history []stamped
}

// Stabilize records desired at now and returns the maximum of the decisions
// inside the window (desired included).
func (s *DownscaleStabilizer) Stabilize(now time.Time, desired int32) int32 {
	cutoff := now.Add(-s.Window)
	kept := s.history[:0]
	best := desired
	for _, e := range s.history {
		if e.at.Before(cutoff) {
			continue
		}
		kept = append(kept, e)
		best = max(best, e.value)
	}
	s.history = append(kept, stamped{at: now, value: desired})
	return best
}

// Reset forgets every decision, e.g. after the target was scaled by hand.
func (s *DownscaleStabilizer) Reset() { s.history = s.history[:0] }
