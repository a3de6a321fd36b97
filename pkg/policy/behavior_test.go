package policy

import (
	"testing"
	"time"
)

var t0 = time.Unix(1_000_000, 0)

func secs(n int) time.Duration { return time.Duration(n) * time.Second }

func window(d time.Duration) *time.Duration { return &d }

// history is a scale event or recommendation placed seconds before t0.
type history struct {
	agoSec int
	value  int32
}

func TestNormalizeRateLimits(t *testing.T) {
	tests := []struct {
		name     string
		behavior Behavior
		current  int32
		desired  int32
		up, down []history // past scale events (amount changed)
		want     int32
		reason   Reason
	}{
		{"default up: +4 pods beats +100% from 1", Behavior{}, 1, 10, nil, nil, 5, ReasonScaleUpLimit},
		{"default up: +100% beats +4 pods from 10", Behavior{}, 10, 50, nil, nil, 20, ReasonScaleUpLimit},
		{"default up within limit", Behavior{}, 10, 13, nil, nil, 13, ReasonDesiredWithinRange},
		{"default up capped by max", Behavior{}, 18, 500, nil, nil, 30, ReasonTooManyReplicas},
		{"up budget used in this period holds", Behavior{}, 5, 10, []history{{5, 4}}, nil, 5, ReasonScaleUpLimit},
		{"up budget frees after the period", Behavior{}, 5, 10, []history{{16, 4}}, nil, 10, ReasonDesiredWithinRange},
		{"select Min up", Behavior{ScaleUp: ScalingRules{SelectPolicy: SelectMin}}, 10, 50, nil, nil, 14, ReasonScaleUpLimit},
		{"disabled up", Behavior{ScaleUp: ScalingRules{SelectPolicy: SelectDisabled}}, 10, 50, nil, nil, 10, ReasonScaleUpLimit},
		{"default down drops at once", Behavior{ScaleDown: ScalingRules{StabilizationWindow: window(0)}}, 10, 3, nil, nil, 3, ReasonDesiredWithinRange},
		{"percent down per period", Behavior{ScaleDown: ScalingRules{StabilizationWindow: window(0),
			Policies: []ScalingPolicy{{Type: PercentPolicy, Value: 50, Period: secs(60)}}}}, 10, 1, nil, nil, 5, ReasonScaleDownLimit},
		{"percent down counts earlier removals", Behavior{ScaleDown: ScalingRules{StabilizationWindow: window(0),
			Policies: []ScalingPolicy{{Type: PercentPolicy, Value: 50, Period: secs(60)}}}}, 7, 1, nil, []history{{30, 3}}, 5, ReasonScaleDownLimit},
		{"percent down rounds the floor down", Behavior{ScaleDown: ScalingRules{StabilizationWindow: window(0),
			Policies: []ScalingPolicy{{Type: PercentPolicy, Value: 10, Period: secs(60)}}}}, 15, 1, nil, nil, 13, ReasonScaleDownLimit},
		{"down Max picks the larger change", Behavior{ScaleDown: ScalingRules{StabilizationWindow: window(0),
			Policies: []ScalingPolicy{{Type: PodsPolicy, Value: 1, Period: secs(60)}, {Type: PercentPolicy, Value: 50, Period: secs(60)}}}}, 10, 1, nil, nil, 5, ReasonScaleDownLimit},
		{"down Min picks the smaller change", Behavior{ScaleDown: ScalingRules{StabilizationWindow: window(0), SelectPolicy: SelectMin,
			Policies: []ScalingPolicy{{Type: PodsPolicy, Value: 1, Period: secs(60)}, {Type: PercentPolicy, Value: 50, Period: secs(60)}}}}, 10, 1, nil, nil, 9, ReasonScaleDownLimit},
		{"disabled down", Behavior{ScaleDown: ScalingRules{StabilizationWindow: window(0), SelectPolicy: SelectDisabled}}, 10, 1, nil, nil, 10, ReasonScaleDownLimit},
		{"down never below min", Behavior{ScaleDown: ScalingRules{StabilizationWindow: window(0)}}, 10, 0, nil, nil, 2, ReasonTooFewReplicas},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := NewNormalizer(tt.behavior)
			for _, e := range tt.up {
				n.upEvents = append(n.upEvents, stamped{at: t0.Add(-secs(e.agoSec)), value: e.value})
			}
			for _, e := range tt.down {
				n.downEvents = append(n.downEvents, stamped{at: t0.Add(-secs(e.agoSec)), value: e.value})
			}
			got, reason := n.Normalize(t0, tt.current, tt.desired, 2, 30)
			if got != tt.want || reason != tt.reason {
				t.Fatalf("Normalize = %d (%s), want %d (%s)", got, reason, tt.want, tt.reason)
			}
		})
	}
}

func TestNormalizeStabilizationWindows(t *testing.T) {
	tests := []struct {
		name     string
		behavior Behavior
		past     []history // recommendations
		current  int32
		desired  int32
		want     int32
	}{
		{"down window keeps the recent peak", Behavior{}, []history{{100, 10}, {50, 8}}, 10, 2, 10},
		{"down window forgets old peaks", Behavior{}, []history{{301, 10}, {50, 6}}, 10, 2, 6},
		{"up window waits for the lowest", Behavior{ScaleUp: ScalingRules{StabilizationWindow: window(secs(60))}}, []history{{30, 4}, {10, 7}}, 3, 9, 4},
		{"up window never goes below current", Behavior{ScaleUp: ScalingRules{StabilizationWindow: window(secs(60))}}, []history{{30, 2}}, 3, 9, 3},
		{"no windows pass through", Behavior{ScaleDown: ScalingRules{StabilizationWindow: window(0)}}, []history{{1, 10}}, 10, 4, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := NewNormalizer(tt.behavior)
			for _, r := range tt.past {
				n.recommendations = append(n.recommendations, stamped{at: t0.Add(-secs(r.agoSec)), value: r.value})
			}
			if got, _ := n.Normalize(t0, tt.current, tt.desired, 1, 100); got != tt.want {
				t.Fatalf("Normalize = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestNormalizerHistoryStaysBounded(t *testing.T) {
	n := NewNormalizer(Behavior{})
	current := int32(5)
	for i := range 10_000 {
		now := t0.Add(secs(15 * i))
		next, _ := n.Normalize(now, current, int32(1+i%17), 1, 50)
		n.RecordScale(now, current, next)
		current = next
	}
	// 300 s window / 15 s period: about 21 live recommendations.
	if len(n.recommendations) > 25 || len(n.upEvents) > 5 || len(n.downEvents) > 5 {
		t.Fatalf("history grew: %d recommendations, %d up, %d down events", len(n.recommendations), len(n.upEvents), len(n.downEvents))
	}
}

func TestBehaviorValidate(t *testing.T) {
	bad := []Behavior{
		{ScaleUp: ScalingRules{StabilizationWindow: window(-time.Second)}},
		{ScaleDown: ScalingRules{StabilizationWindow: window(2 * time.Hour)}},
		{ScaleUp: ScalingRules{SelectPolicy: "Sometimes"}},
		{ScaleUp: ScalingRules{Policies: []ScalingPolicy{{Type: PodsPolicy, Value: 0, Period: time.Second}}}},
		{ScaleDown: ScalingRules{Policies: []ScalingPolicy{{Type: "Nodes", Value: 1, Period: time.Second}}}},
	}
	for i, b := range bad {
		if err := b.Validate(); err == nil {
			t.Errorf("case %d: Validate() accepted %+v", i, b)
		}
	}
	if err := (Behavior{}).WithDefaults().Validate(); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
}
