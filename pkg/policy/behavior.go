package policy

import (
	"fmt"
	"math"
	"time"
)

// ScalingPolicyType is how a rate policy limits change: by a number of pods or by
// a percentage of the count at the start of the period.
type ScalingPolicyType string

const (
	// PodsPolicy allows Value pods of change per period.
	PodsPolicy ScalingPolicyType = "Pods"
	// PercentPolicy allows Value percent of change per period.
	PercentPolicy ScalingPolicyType = "Percent"
)

// SelectPolicy picks among several rate policies.
type SelectPolicy string

const (
	// SelectMax picks the policy allowing the largest change (the default).
	SelectMax SelectPolicy = "Max"
	// SelectMin picks the policy allowing the smallest change.
	SelectMin SelectPolicy = "Min"
	// SelectDisabled forbids change in this direction.
	SelectDisabled SelectPolicy = "Disabled"
)

// ScalingPolicy is one rate limit: at most Value (pods or percent) of change
// within any Period.
type ScalingPolicy struct {
	Type   ScalingPolicyType
	Value  int32
	Period time.Duration
}

// ScalingRules is HPA v2's behaviour for one direction.
type ScalingRules struct {
	// StabilizationWindow: scale-ups use the lowest, scale-downs the highest
	// recommendation seen within it. Nil means the direction's default.
	StabilizationWindow *time.Duration
	// SelectPolicy defaults to Max when empty.
	SelectPolicy SelectPolicy
	// Policies default to upstream's when nil.
	Policies []ScalingPolicy
}

// Behavior is the HPA v2 `behavior` field: rules for each direction.
type Behavior struct {
	ScaleUp   ScalingRules
	ScaleDown ScalingRules
}

// Upstream defaults (k8s.io/kubernetes pkg/apis/autoscaling/v2 defaults).
const (
	DefaultScaleUpWindow   = 0 * time.Second
	DefaultScaleDownWindow = 300 * time.Second
)

// defaultScaleUpPolicies: double or add four pods every 15 s, whichever is more.
func defaultScaleUpPolicies() []ScalingPolicy {
	return []ScalingPolicy{
		{Type: PodsPolicy, Value: 4, Period: 15 * time.Second},
		{Type: PercentPolicy, Value: 100, Period: 15 * time.Second},
	}
}

// defaultScaleDownPolicies: drop to the target at once.
func defaultScaleDownPolicies() []ScalingPolicy {
	return []ScalingPolicy{{Type: PercentPolicy, Value: 100, Period: 15 * time.Second}}
}

// WithDefaults fills what the user left unset with upstream's defaults, as
// the API server's defaulting does, so the rest of the code sees no nils.
func (b Behavior) WithDefaults() Behavior {
	b.ScaleUp = b.ScaleUp.withDefaults(DefaultScaleUpWindow, defaultScaleUpPolicies)
	b.ScaleDown = b.ScaleDown.withDefaults(DefaultScaleDownWindow, defaultScaleDownPolicies)
	return b
}

func (r ScalingRules) withDefaults(window time.Duration, policies func() []ScalingPolicy) ScalingRules {
	if r.StabilizationWindow == nil {
		r.StabilizationWindow = &window
	}
	if r.SelectPolicy == "" {
		r.SelectPolicy = SelectMax
	}
	if r.Policies == nil {
		r.Policies = policies()
	}
	return r
}

// Validate reports rules the API server would reject.
func (b Behavior) Validate() error {
	for dir, r := range map[string]ScalingRules{"scaleUp": b.ScaleUp, "scaleDown": b.ScaleDown} {
		if w := r.StabilizationWindow; w != nil && (*w < 0 || *w > time.Hour) {
			return fmt.Errorf("behavior.%s.stabilizationWindowSeconds %v: must be within [0s, 3600s]", dir, *w)
		}
		switch r.SelectPolicy {
		case "", SelectMax, SelectMin, SelectDisabled:
		default:
			return fmt.Errorf("behavior.%s.selectPolicy %q: want Max, Min or Disabled", dir, r.SelectPolicy)
		}
		for i, p := range r.Policies {
			if p.Value <= 0 || p.Period <= 0 || p.Period > 30*time.Minute {
				return fmt.Errorf("behavior.%s.policies[%d]: value %d and period %v must be > 0, period at most 1800s", dir, i, p.Value, p.Period)
			}
			if p.Type != PodsPolicy && p.Type != PercentPolicy {
				return fmt.Errorf("behavior.%s.policies[%d].type %q: want Pods or Percent", dir, i, p.Type)
			}
		}
	}
	return nil
}

// stamped is a value with the time it was recorded.
type stamped struct {
	at    time.Time
	value int32
}

// Normalizer applies HPA v2 behaviour to raw recommendations: it remembers
// past recommendations (for the stabilisation windows) and past scale events
// (for the rate policies). One Normalizer serves one scaled object.
type Normalizer struct {
	behavior        Behavior
	recommendations []stamped
	upEvents        []stamped
	downEvents      []stamped
}

// NewNormalizer returns a Normalizer for b, with upstream defaults filled in.
func NewNormalizer(b Behavior) *Normalizer {
	return &Normalizer{behavior: b.WithDefaults()}
}

// Reason says what shaped a normalized recommendation, for events and status.
type Reason string

// Reasons a Normalizer reports; they match the HPA's ScalingLimited reasons.
const (
	ReasonDesiredWithinRange Reason = "DesiredWithinRange"
	ReasonScaleUpStabilized  Reason = "ScaleUpStabilized"
	ReasonScaleDownStabilize Reason = "ScaleDownStabilized"
	ReasonScaleUpLimit       Reason = "ScaleUpLimit"
	ReasonScaleDownLimit     Reason = "ScaleDownLimit"
	ReasonTooManyReplicas    Reason = "TooManyReplicas"
	ReasonTooFewReplicas     Reason = "TooFewReplicas"
)

// Normalize turns the raw desired count into the count to apply now: first
// the stabilisation windows, then the rate policies and [min, max]. It records
// desired as a recommendation. Call [Normalizer.RecordScale] once the change
// has actually been applied.
func (n *Normalizer) Normalize(now time.Time, current, desired, minReplicas, maxReplicas int32) (int32, Reason) {
	stabilized, reason := n.stabilize(now, current, desired)
	limited, limitReason := n.rateLimit(now, current, stabilized, minReplicas, maxReplicas)
	if limited != stabilized {
		return limited, limitReason
	}
	return limited, reason
}

// stabilize bounds desired by the lowest recommendation in the scale-up
// window and the highest in the scale-down window, then records desired.
// Recommendations older than both windows are dropped on the way, so the
// history holds only the recommendations of the longer window.
func (n *Normalizer) stabilize(now time.Time, current, desired int32) (int32, Reason) {
	upCutoff := now.Add(-*n.behavior.ScaleUp.StabilizationWindow)
	downCutoff := now.Add(-*n.behavior.ScaleDown.StabilizationWindow)
	up, down := desired, desired
	kept := n.recommendations[:0]
	for _, r := range n.recommendations {
		if r.at.Before(upCutoff) && r.at.Before(downCutoff) {
			continue
		}
		kept = append(kept, r)
		if r.at.After(upCutoff) {
			up = min(up, r.value)
		}
		if r.at.After(downCutoff) {
			down = max(down, r.value)
		}
	}
	rec, reason := current, ReasonDesiredWithinRange
	if rec < up {
		rec, reason = up, ReasonScaleUpStabilized
	}
	if rec > down {
		rec, reason = down, ReasonScaleDownStabilize
	}
	if rec == desired {
		reason = ReasonDesiredWithinRange
	}
	n.recommendations = append(kept, stamped{at: now, value: desired})
	return rec, reason
}

func (n *Normalizer) rateLimit(now time.Time, current, desired, minReplicas, maxReplicas int32) (int32, Reason) {
	switch {
	case desired > current:
		limit := max(n.scaleUpLimit(now, current), current)
		allowed, reason := maxReplicas, ReasonTooManyReplicas
		if allowed > limit {
			allowed, reason = limit, ReasonScaleUpLimit
		}
		if desired > allowed {
			return allowed, reason
		}
	case desired < current:
		limit := min(n.scaleDownLimit(now, current), current)
		allowed, reason := minReplicas, ReasonTooFewReplicas
		if allowed < limit {
			allowed, reason = limit, ReasonScaleDownLimit
		}
		if desired < allowed {
			return allowed, reason
		}
	}
	return desired, ReasonDesiredWithinRange
}

// changeSince sums the changes recorded after now-period.
func changeSince(events []stamped, now time.Time, period time.Duration) int32 {
	cutoff := now.Add(-period)
	var sum int32
	for _, e := range events {
		if e.at.After(cutoff) {
			sum += e.value
		}
	}
	return sum
}

// periodStart is the replica count at the start of a policy's period.
func (n *Normalizer) periodStart(now time.Time, current int32, period time.Duration) int32 {
	return current - changeSince(n.upEvents, now, period) + changeSince(n.downEvents, now, period)
}

func (n *Normalizer) scaleUpLimit(now time.Time, current int32) int32 {
	rules := n.behavior.ScaleUp
	if rules.SelectPolicy == SelectDisabled {
		return current
	}
	pick, result := maxInt64, int64(math.MinInt32)
	if rules.SelectPolicy == SelectMin {
		pick, result = minInt64, int64(math.MaxInt32)
	}
	for _, p := range rules.Policies {
		start := int64(n.periodStart(now, current, p.Period))
		var proposed int64
		if p.Type == PodsPolicy {
			proposed = start + int64(p.Value)
		} else {
			proposed = int64(math.Ceil(float64(start) * (1 + float64(p.Value)/100)))
		}
		result = pick(result, proposed)
	}
	return saturate32(result)
}

func (n *Normalizer) scaleDownLimit(now time.Time, current int32) int32 {
	rules := n.behavior.ScaleDown
	if rules.SelectPolicy == SelectDisabled {
		return current
	}
	pick, result := minInt64, int64(math.MaxInt32)
	if rules.SelectPolicy == SelectMin {
		pick, result = maxInt64, int64(math.MinInt32)
	}
	for _, p := range rules.Policies {
		start := int64(n.periodStart(now, current, p.Period))
		var proposed int64
		if p.Type == PodsPolicy {
			proposed = start - int64(p.Value)
		} else {
			proposed = int64(float64(start) * (1 - float64(p.Value)/100))
		}
		result = pick(result, proposed)
	}
	return saturate32(result)
}

func maxInt64(a, b int64) int64 { return max(a, b) }
func minInt64(a, b int64) int64 { return min(a, b) }

func saturate32(v int64) int32 {
	return int32(max(min(v, math.MaxInt32), math.MinInt32))
}

// RecordScale remembers that the count changed from prev to next at now, so
// later rate limits count it. Events older than the longest policy period of
// their direction are recycled, keeping the history bounded.
func (n *Normalizer) RecordScale(now time.Time, prev, next int32) {
	switch {
	case next > prev:
		n.upEvents = recordEvent(n.upEvents, now, next-prev, longestPeriod(n.behavior.ScaleUp))
	case next < prev:
		n.downEvents = recordEvent(n.downEvents, now, prev-next, longestPeriod(n.behavior.ScaleDown))
	}
}

func longestPeriod(r ScalingRules) time.Duration {
	var longest time.Duration
	for _, p := range r.Policies {
		longest = max(longest, p.Period)
	}
	return longest
}

func recordEvent(events []stamped, now time.Time, change int32, longest time.Duration) []stamped {
	cutoff := now.Add(-longest)
	entry := stamped{at: now, value: change}
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].at.Before(cutoff) {
			events[i] = entry
			return events
		}
	}
	return append(events, entry)
}
