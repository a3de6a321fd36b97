package demo

import (
	"strings"
	"testing"
	"time"
)

func TestPhaseAtRepeatsTheSchedule(t *testing.T) {
	phases := []Phase{{Name: "a", Rate: 1, Length: 10 * time.Second}, {Name: "b", Rate: 5, Length: 20 * time.Second}}
	cases := []struct {
		at   time.Duration
		want string
	}{
		{0, "a"}, {9 * time.Second, "a"}, {10 * time.Second, "b"}, {29 * time.Second, "b"}, {30 * time.Second, "a"}, {45 * time.Second, "b"},
	}
	for _, c := range cases {
		if got := PhaseAt(phases, c.at).Name; got != c.want {
			t.Errorf("PhaseAt(%s) = %s, want %s", c.at, got, c.want)
		}
	}
	if got := PhaseAt(nil, time.Second).Name; got != "idle" {
		t.Errorf("PhaseAt(no phases) = %s, want idle", got)
	}
}

func TestRenderShowsReplicasDecisionAndEvents(t *testing.T) {
	out := Render(Snapshot{
		Elapsed: 42 * time.Second, Phase: Phase{Name: "peak", Rate: 25}, Sent: 900, ArrivalRate: 24.5,
		Backlog: 130, Desired: 13, Current: 11, Ready: 9, Decision: "backlog 130 × scalingFactor 0.1 → 13",
		Events:  []string{"ScaledUp desired 9 → 13"},
		History: []Point{{Desired: 1, Backlog: 10}, {Desired: 13, Backlog: 130}},
	})
	for _, want := range []string{"desired 13", "current 11", "ready 9", "backlog        130", "peak", "ScaledUp desired 9 → 13", "scalingFactor 0.1", "▁█"} {
		if !strings.Contains(out, want) {
			t.Errorf("view lacks %q:\n%s", want, out)
		}
	}
}
