package policy

import "time"

// DownscaleStabilizer is the Custom Pod Autoscaler's downscaleStabilization,
// also the QWorker's default scale-down stabilisation: the applied count is
// the highest decision made within the window, so scale-ups act at once and
// scale-downs wait until the window has forgotten the peak. A zero window
// passes decisions through.
//
// The history is bounded whatever the decision rate: it keeps only the
// decisions that can still be the highest of some later window, i.e. each
// kept decision is higher than every later one, so there is at most one
// entry per distinct count (and one entry while the count only grows).
type DownscaleStabilizer struct {
	// Window is how long a decision keeps the count up.
	Window time.Duration
	// history runs oldest to newest with strictly falling values.
	history []stamped
}

// Stabilize records desired at now and returns the maximum of the decisions
// inside the window (desired included).
func (s *DownscaleStabilizer) Stabilize(now time.Time, desired int32) int32 {
	if s.Window <= 0 {
		s.history = s.history[:0]
		return desired
	}
	cutoff := now.Add(-s.Window)
	first := 0
	for first < len(s.history) && s.history[first].at.Before(cutoff) {
		first++
	}
	kept := s.history[:copy(s.history, s.history[first:])]
	for len(kept) > 0 && kept[len(kept)-1].value <= desired {
		kept = kept[:len(kept)-1]
	}
	s.history = append(kept, stamped{at: now, value: desired})
	return s.history[0].value
}

// Len is the number of decisions remembered (bounded, see the type's doc).
func (s *DownscaleStabilizer) Len() int { return len(s.history) }

// Reset forgets every decision, e.g. after the target was scaled by hand.
func (s *DownscaleStabilizer) Reset() { s.history = s.history[:0] }
