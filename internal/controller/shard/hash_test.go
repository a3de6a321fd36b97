package shard

import (
	"fmt"
	"testing"
)

// TestOwnerSpreadsAndMovesLittle: keys spread evenly over the members, a
// joining member takes about 1/n of them from the others and nothing moves
// between the others, and a leaving member's keys are all that move.
func TestOwnerSpreadsAndMovesLittle(t *testing.T) {
	const n = 9000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("ns-%d/qworker-%d", i%37, i)
	}
	three := []string{"swell-0", "swell-1", "swell-2"}
	four := append(append([]string(nil), three...), "swell-3")
	count := map[string]int{}
	moved, movedElsewhere := 0, 0
	for _, k := range keys {
		before, after := Owner(k, three), Owner(k, four)
		count[before]++
		if before != after {
			moved++
			if after != "swell-3" {
				movedElsewhere++
			}
		}
		if got := Owner(k, []string{"swell-2", "swell-0", "swell-1"}); got != before {
			t.Fatalf("owner of %s depends on the members' order: %s vs %s", k, got, before)
		}
	}
	for _, m := range three {
		if c := count[m]; c < n/3*85/100 || c > n/3*115/100 {
			t.Errorf("%s owns %d of %d keys, want within 15 %% of %d", m, c, n, n/3)
		}
	}
	if movedElsewhere != 0 {
		t.Errorf("%d keys moved between the old members when one joined", movedElsewhere)
	}
	if moved < n/4*80/100 || moved > n/4*120/100 {
		t.Errorf("a fourth member took %d of %d keys, want about 1/4 (%d)", moved, n, n/4)
	}
	t.Logf("3 members: %v; a 4th took %d of %d keys", count, moved, n)
	// Removing a member moves only its own keys.
	for _, k := range keys {
		if before, after := Owner(k, four), Owner(k, three); before != "swell-3" && before != after {
			t.Fatalf("%s moved from %s to %s when swell-3 left", k, before, after)
		}
	}
	if Owner("a/b", nil) != "" {
		t.Error("no members must give no owner")
	}
}
