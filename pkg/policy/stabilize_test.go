package policy

import (
	"errors"
	"testing"
	"time"
)

func TestDownscaleStabilizer(t *testing.T) {
	s := DownscaleStabilizer{Window: time.Minute}
	steps := []struct {
		sec     int
		desired int32
		want    int32
	}{
		{0, 3, 3},
		{10, 8, 8}, // up at once
		{20, 2, 8}, // down held by the peak at 10 s
		{69, 1, 8}, // peak still inside [9 s, 69 s]
		{71, 1, 2}, // peak gone, 20 s's 2 remains
		{81, 1, 1}, // all higher decisions gone
		{82, 5, 5}, // up again at once
	}
	for _, st := range steps {
		if got := s.Stabilize(t0.Add(secs(st.sec)), st.desired); got != st.want {
			t.Fatalf("t=%ds desired %d: got %d, want %d", st.sec, st.desired, got, st.want)
		}
	}
	s.Reset()
	if got := s.Stabilize(t0.Add(secs(83)), 1); got != 1 {
		t.Fatalf("after Reset: got %d, want 1", got)
	}
}

// The stabilizer keeps only decisions that can still be a window's
// highest, so its history is bounded by the distinct counts whatever the
// rate, and its answers match a plain scan of the window.
func TestDownscaleStabilizerBoundedAndExact(t *testing.T) {
	s := DownscaleStabilizer{Window: 30 * time.Second}
	type rec struct {
		at    time.Time
		value int32
	}
	var all []rec
	for i := range 20_000 {
		now := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		v := int32((i*7919)%50) - int32(i%3)
		all = append(all, rec{now, v})
		want := v
		for _, r := range all {
			if !r.at.Before(now.Add(-s.Window)) {
				want = max(want, r.value)
			}
		}
		if len(all) > 400 {
			all = all[1:]
		}
		if got := s.Stabilize(now, v); got != want {
			t.Fatalf("step %d: got %d, want %d (the window's highest)", i, got, want)
		}
		if s.Len() > 52 {
			t.Fatalf("step %d: %d entries, want at most one per distinct count", i, s.Len())
		}
	}
}

func TestDownscaleStabilizerZeroWindowPassesThrough(t *testing.T) {
	var s DownscaleStabilizer
	for i, d := range []int32{5, 1, 7, 0} {
		if got := s.Stabilize(t0.Add(secs(i)), d); got != d {
			t.Fatalf("step %d: got %d, want %d", i, got, d)
		}
	}
}

func TestFallbackGuard(t *testing.T) {
	fail := errors.New("redis: connection refused")
	tests := []struct {
		name     string
		policy   Fallback
		outcomes []error
		want     []int32
	}{
		{"hold below and above threshold", Fallback{FailureThreshold: 2}, []error{fail, fail, fail}, []int32{6, 6, 6}},
		{"go to fallback replicas at threshold", Fallback{FailureThreshold: 2, Replicas: 3}, []error{fail, fail, fail}, []int32{6, 3, 3}},
		{"success resets the run", Fallback{FailureThreshold: 2, Replicas: 3}, []error{fail, nil, fail}, []int32{6, 0, 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := FallbackGuard{Policy: tt.policy}
			for i, err := range tt.outcomes {
				// current 6; a successful measurement asks for 0.
				got, falling := g.Apply(6, 0, err)
				if got != tt.want[i] || falling != (err != nil) {
					t.Fatalf("step %d: got %d (fallback %v), want %d", i, got, falling, tt.want[i])
				}
			}
		})
	}
}

func TestFallbackNeverZeroOnFailure(t *testing.T) {
	g := FallbackGuard{Policy: Fallback{FailureThreshold: 1}}
	if got, _ := g.Apply(4, 0, errors.New("x")); got != 4 {
		t.Fatalf("failed measurement gave %d replicas, want the current 4", got)
	}
	if (Fallback{FailureThreshold: 0}).Validate() == nil || (Fallback{FailureThreshold: 1, Replicas: -1}).Validate() == nil {
		t.Fatal("Validate accepted a threshold of 0 or negative replicas")
	}
}
