package shard

// Action is what a replica does with an object on a pass.
type Action int

const (
	// Ignore means another replica owns the object (or should take it).
	Ignore Action = iota
	// Act means this replica owns the object and runs the kind's
	// reconciler.
	Act
	// Acquire means the object has no live owner and the hash names this
	// replica: it writes its name into the owner label, then acts.
	Acquire
	// HandOver means this replica owns the object but the hash names
	// another live replica: it stops acting and writes that replica's name.
	HandOver
)

func (a Action) String() string {
	switch a {
	case Act:
		return "act"
	case Acquire:
		return "acquire"
	case HandOver:
		return "hand over"
	default:
		return "ignore"
	}
}

// Decide chooses this replica's action on an object whose owner label
// reads owner, given the replica the hash names (target) and which
// replicas are alive. It is the whole ownership rule: only the labelled
// owner acts; the label moves from a live owner only by that owner's own
// hand-over, and from a dead (or absent) owner only to the target.
func Decide(self, owner, target string, alive func(string) bool) (Action, string) {
	switch {
	case owner == self && (target == self || target == ""):
		return Act, self
	case owner == self:
		return HandOver, target
	case owner != "" && alive(owner):
		return Ignore, owner
	case target == self:
		return Acquire, self
	default:
		return Ignore, target
	}
}
