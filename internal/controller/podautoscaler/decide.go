package podautoscaler

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// objState is what one PodAutoscaler remembers between passes: the
// stabilisation windows, and whether the last pass left the target idle. It
// is rebuilt when the spec's generation changes, so a new behavior never
// inherits windows computed under the old one.
type objState struct {
	generation int64
	stabilizer policy.DownscaleStabilizer
	normalizer *policy.Normalizer
	// idle is idleAfter of the last pass; the push gate reads it from a
	// subscription goroutine while passes write it, hence atomic.
	idle atomic.Bool
	// wait is the wait target's model state (waittarget.go).
	wait waitState
}

func newObjState(spec paSpec) *objState {
	s := &objState{generation: spec.Generation, stabilizer: policy.DownscaleStabilizer{Window: spec.Stabilize}}
	if spec.Behavior != nil {
		s.normalizer = policy.NewNormalizer(*spec.Behavior)
	}
	return s
}

// decide turns an evaluation into the count to apply exactly as
// pkg/cpa does: clamp to [min, max], CPA's downscale stabilisation, then
// HPA behavior. The reason lists each step that changed the count.
func (s *objState) decide(now time.Time, spec paSpec, current, wanted int32) (int32, string) {
	desired := min(max(wanted, spec.Min), spec.Max)
	reason := fmt.Sprintf("evaluation %d within [%d, %d]", wanted, spec.Min, spec.Max)
	if desired != wanted {
		reason = fmt.Sprintf("evaluation %d clamped to [%d, %d]", wanted, spec.Min, spec.Max)
	}
	if s.stabilizer.Window > 0 {
		if st := s.stabilizer.Stabilize(now, desired); st != desired {
			reason += fmt.Sprintf("; downscale stabilisation (%s) holds the highest recent evaluation %d", s.stabilizer.Window, st)
			desired = st
		}
	}
	if s.normalizer != nil {
		if n, why := s.normalizer.Normalize(now, current, desired, spec.Min, spec.Max); n != desired {
			reason += fmt.Sprintf("; behavior %s: %d instead of %d", why, n, desired)
			desired = n
		}
	}
	return desired, reason
}

// scaled records an applied change for the behavior's rate limits.
func (s *objState) scaled(now time.Time, from, to int32) {
	if s.normalizer != nil {
		s.normalizer.RecordScale(now, from, to)
	}
}
