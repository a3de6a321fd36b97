package policy

import (
	"fmt"
	"math"
	"sort"
)

// Resources is a vector of quantities by resource name ("cpu" in millicores,
// "memory" in bytes, or any extended resource). A slot is such a vector: the
// footprint of one dedicated server.
type Resources map[string]int64

// NodeCapacity is one node as the buffer math sees it.
type NodeCapacity struct {
	Name        string
	Allocatable Resources
	Requested   Resources
	// Cordoned nodes keep their pods but offer no free slots.
	Cordoned bool
}

// FreeSlots is how many whole slots still fit on node: for every resource
// the slot asks for, (allocatable − requested) / slot, and the minimum over
// resources. A slot must fit on one node, so free capacity spread over
// several nodes never adds up to a slot. Resources with a zero or negative
// quantity in the slot do not limit it; a slot that asks for nothing fits
// nowhere (0), rather than infinitely often.
func FreeSlots(node NodeCapacity, slot Resources) int64 {
	if node.Cordoned {
		return 0
	}
	fits := int64(math.MaxInt64)
	limited := false
	for name, need := range slot {
		if need <= 0 {
			continue
		}
		limited = true
		free := node.Allocatable[name] - node.Requested[name]
		if free <= 0 {
			return 0
		}
		fits = min(fits, free/need)
	}
	if !limited {
		return 0
	}
	return fits
}

// Buffer is how many free slots a pool keeps ready: at least Absolute, and
// at least Percent of the slots in use (rounded up). Both may be set.
type Buffer struct {
	Absolute int64
	Percent  float64
}

// Validate reports a buffer that cannot be met.
func (b Buffer) Validate() error {
	if b.Absolute < 0 || b.Percent < 0 || math.IsNaN(b.Percent) || math.IsInf(b.Percent, 0) {
		return fmt.Errorf("buffer %+v: absolute and percent must be finite and >= 0", b)
	}
	return nil
}

// Wanted is the number of free slots to keep when inUse slots are taken.
func (b Buffer) Wanted(inUse int64) int64 {
	pct := int64(0)
	if b.Percent > 0 && inUse > 0 {
		pct = int64(ceilCount(float64(inUse) * b.Percent / 100))
	}
	return max(b.Absolute, pct, 0)
}

// BufferPlan is what a node pool should do to hold its buffer.
type BufferPlan struct {
	// Free is the free slots over all schedulable nodes.
	Free int64
	// Wanted is the buffer target.
	Wanted int64
	// AddNodes is how many new nodes (shaped like the template) are needed.
	AddNodes int
	// Surplus lists nodes, emptiest first, that can be cordoned while the
	// remaining free slots still cover the buffer. Only nodes with no slot
	// in use are listed, so cordoning them evicts nothing.
	Surplus []string
}

// PlanBuffer computes the buffer plan for nodes, given the slot shape, the
// slots in use and an empty node's allocatable resources (template). When
// the template cannot hold a single slot, AddNodes stays 0: adding such
// nodes would never help, and the caller should report it.
func PlanBuffer(nodes []NodeCapacity, slot Resources, inUse int64, b Buffer, template Resources) BufferPlan {
	plan := BufferPlan{Wanted: b.Wanted(inUse)}
	type candidate struct {
		name string
		free int64
	}
	var empty []candidate
	for _, n := range nodes {
		free := FreeSlots(n, slot)
		plan.Free += free
		if !n.Cordoned && isEmpty(n.Requested) {
			empty = append(empty, candidate{n.Name, free})
		}
	}
	if deficit := plan.Wanted - plan.Free; deficit > 0 {
		perNode := FreeSlots(NodeCapacity{Allocatable: template}, slot)
		if perNode > 0 {
			plan.AddNodes = int((deficit + perNode - 1) / perNode)
		}
		return plan
	}
	sort.SliceStable(empty, func(i, j int) bool { return empty[i].free < empty[j].free })
	spare := plan.Free - plan.Wanted
	for _, c := range empty {
		if c.free > spare {
			continue
		}
		spare -= c.free
		plan.Surplus = append(plan.Surplus, c.name)
	}
	return plan
}

// isEmpty reports whether no resource is requested on a node. System
// daemons should be subtracted from allocatable by the caller, not counted
// as requests, or no node ever looks empty.
func isEmpty(requested Resources) bool {
	for _, v := range requested {
		if v > 0 {
			return false
		}
	}
	return true
}
