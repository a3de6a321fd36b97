package shard

import "testing"

func TestDecide(t *testing.T) {
	alive := func(id string) bool { return id == "a" || id == "b" }
	for name, tc := range map[string]struct {
		self, owner, target string
		want                Action
		to                  string
	}{
		"own and hashed here":              {self: "a", owner: "a", target: "a", want: Act, to: "a"},
		"own, hash names another":          {self: "a", owner: "a", target: "b", want: HandOver, to: "b"},
		"another live owner":               {self: "a", owner: "b", target: "a", want: Ignore, to: "b"},
		"another live owner, not for me":   {self: "a", owner: "b", target: "b", want: Ignore, to: "b"},
		"no owner, hashed here":            {self: "a", owner: "", target: "a", want: Acquire, to: "a"},
		"no owner, hashed elsewhere":       {self: "a", owner: "", target: "b", want: Ignore, to: "b"},
		"dead owner, hashed here":          {self: "a", owner: "c", target: "a", want: Acquire, to: "a"},
		"dead owner, hashed elsewhere":     {self: "a", owner: "c", target: "b", want: Ignore, to: "b"},
		"own, no members known to hash to": {self: "a", owner: "a", target: "", want: Act, to: "a"},
	} {
		t.Run(name, func(t *testing.T) {
			got, to := Decide(tc.self, tc.owner, tc.target, alive)
			if got != tc.want || to != tc.to {
				t.Errorf("Decide = %s %q, want %s %q", got, to, tc.want, tc.to)
			}
		})
	}
}
