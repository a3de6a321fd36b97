package nodepool

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// NodeState is one pool node as a decision pass sees it: plain data copied
// from the informer cache, so the plan can be tested and benchmarked
// without a cluster.
type NodeState struct {
	Name string
	// Ready is the node's Ready condition. A node that is not Ready is
	// booting (or broken): it counts toward the pool size but offers no
	// slots yet.
	Ready bool
	// Cordoned is spec.unschedulable, whoever set it.
	Cordoned bool
	// SwellCordoned is true when the node carries Swell's cordon
	// annotation: only such nodes are ever uncordoned or deleted.
	SwellCordoned bool
	// CordonedAt is when Swell first cordoned the node (the annotation).
	CordonedAt time.Time
	// EmptySince is when the Swell-cordoned node was first seen with no
	// server pod (the swell.dev/empty-since annotation); zero while it is
	// not empty. The empty-node expiry counts from it, not from the cordon.
	EmptySince time.Time
	// Deleting is set once a delete was asked for (by Swell or anyone):
	// such a node is out of every decision.
	Deleting bool
	// Allocatable and Requested feed [policy.FreeSlots]. Requested sums
	// every pod that still runs on the node, not only server pods.
	Allocatable policy.Resources
	Requested   policy.Resources
	// ServerPods counts the server pods bound to the node, whatever their
	// phase short of finished.
	ServerPods int
}

// Input is everything one decision pass needs. It holds no clients and no
// clock: the caller passes Now, so every rule can be tested as a table.
type Input struct {
	Now   time.Time
	Nodes []NodeState
	// PendingServerPods are server pods not bound to any node yet: each
	// needs a slot on top of the buffer.
	PendingServerPods int
	// Slot is the footprint of one server.
	Slot policy.Resources
	// Template is an empty new node's allocatable resources. Nil means
	// unknown (empty pool, provider without a template): the plan then
	// grows one node at a time.
	Template policy.Resources
	Buffer   policy.Buffer
	Min, Max int
	// ProviderSize is the pool size the provider reports (its target
	// count). Nodes it is still creating are not registered yet but are
	// counted, so a resize never repeats itself or shrinks the pool.
	ProviderSize int
	// EmptyNodeExpiry is how long a Swell-cordoned node must have been
	// empty (see NodeState.EmptySince) before it is deleted.
	EmptyNodeExpiry time.Duration
	// CooldownUntil blocks resizes before this instant (after a resize).
	CooldownUntil time.Time
}

// Decision is the outcome of one pass: every action to take, and the
// figures behind them for status, metrics and logs.
type Decision struct {
	// Uncordon lists Swell-cordoned nodes to reopen, fullest first.
	Uncordon []string
	// Cordon lists nodes to close to new servers, emptiest first.
	Cordon []string
	// Delete lists expired, empty, Swell-cordoned nodes, empty longest
	// first, never taking the pool below Min.
	Delete []string
	// Resize is the new pool size when the pool must grow; 0 means no
	// resize. Swell never resizes down: it deletes chosen nodes instead,
	// so the provider cannot pick a node that runs a server.
	Resize int

	// Size is the pool size counted by the plan: registered nodes (ready,
	// booting or cordoned) or the provider's count, whichever is larger.
	Size                     int
	Ready, Booting, Cordoned int
	// Free is the free slots on ready, schedulable nodes; InUse the
	// server pods bound to pool nodes; Wanted the buffer target.
	Free, InUse, Wanted int64
	// Incoming is the slots of nodes still booting or being created.
	Incoming int64
	// Notes explain why an action was held back (cooldown, maximum,
	// a template too small), for events and logs.
	Notes []string
}

// Plan decides one pass. The rules, in order:
//  1. the pool size counts booting and cordoned nodes and the provider's
//     count, so nothing already asked for is asked again;
//  2. below Min, grow to Min;
//  3. when free slots (after pending servers) fall short of the buffer,
//     uncordon Swell-cordoned ready nodes, fullest first; if still short
//     after counting incoming nodes, grow by whole template nodes, capped
//     at Max and held during the cooldown;
//  4. otherwise (no deficit, no resize cooldown running), the nodes that
//     stay open are chosen afresh from the current state alone: rank every
//     ready node with a free slot that is open or Swell-cordoned emptiest
//     first, close the longest run of that ranking whose slots the need can
//     spare, and open the rest. A node is never closed while a node with
//     fewer servers stays open, so the outcome depends only on where the
//     servers are, not on how their departures were batched into passes;
//     nodes with no free slot are left as they are (closing or opening them
//     gains nothing);
//  5. delete every Swell-cordoned node that has had no server pod for at
//     least the expiry (EmptySince), in the same pass, never below Min.
//
// Nodes cordoned by someone else, and nodes being deleted, are never
// touched.
func Plan(in Input) Decision {
	d := Decision{}
	active := countNodes(in, &d)
	d.Wanted = in.Buffer.Wanted(d.InUse + int64(in.PendingServerPods))
	need := d.Wanted + int64(in.PendingServerPods)
	perNode := slotsPerNode(in)
	d.Incoming += int64(max(0, d.Size-active)) * max(perNode, 0)

	uncordoned := map[string]bool{}
	switch {
	case d.Free < need:
		grow(in, &d, need-d.Free, perNode, uncordoned)
	case in.Now.Before(in.CooldownUntil):
		// Nodes just added are still filling; closing others now would
		// flap (cordon, then uncordon at the next burst).
		if d.Free > need {
			d.Notes = append(d.Notes, fmt.Sprintf("surplus of %d slots kept: cooldown until %s", d.Free-need, in.CooldownUntil.Format(time.RFC3339)))
		}
	default:
		d.Cordon, d.Uncordon = balance(in.Nodes, in.Slot, need)
		for _, name := range d.Uncordon {
			uncordoned[name] = true
		}
	}
	if d.Resize == 0 && d.Size < in.Min {
		d.Resize = resizeTo(in, &d, in.Min)
	}
	if d.Resize == 0 {
		// Deleting while a resize is in flight would let the provider's
		// count drop below the size just asked for.
		d.Delete = expired(in, d.Size, uncordoned)
	}
	return d
}

// countNodes fills the counters and returns how many nodes are registered
// and not being deleted.
func countNodes(in Input, d *Decision) int {
	active := 0
	for _, n := range in.Nodes {
		if n.Deleting {
			continue
		}
		active++
		d.InUse += int64(n.ServerPods)
		switch {
		case n.Cordoned:
			d.Cordoned++
		case !n.Ready:
			d.Booting++
			d.Incoming += policy.FreeSlots(capacity(n), in.Slot)
		default:
			d.Ready++
			d.Free += policy.FreeSlots(capacity(n), in.Slot)
		}
	}
	d.Size = max(active, in.ProviderSize)
	return active
}

// slotsPerNode is how many slots an empty new node holds: from the
// template, or -1 when the template is unknown.
func slotsPerNode(in Input) int64 {
	if in.Template == nil {
		return -1
	}
	return policy.FreeSlots(policy.NodeCapacity{Allocatable: in.Template}, in.Slot)
}

// grow covers a deficit: cordoned capacity first, then new nodes.
func grow(in Input, d *Decision, deficit, perNode int64, uncordoned map[string]bool) {
	for _, n := range reopenable(in.Nodes) {
		if deficit <= 0 {
			break
		}
		d.Uncordon = append(d.Uncordon, n.Name)
		uncordoned[n.Name] = true
		slots := policy.FreeSlots(policy.NodeCapacity{Allocatable: n.Allocatable, Requested: n.Requested}, in.Slot)
		d.Free += slots
		deficit -= slots
	}
	deficit -= d.Incoming
	if deficit <= 0 {
		return
	}
	switch {
	case perNode == 0:
		d.Notes = append(d.Notes, fmt.Sprintf("a new node cannot hold one slot %v: not growing", in.Slot))
		return
	case perNode < 0:
		// Unknown node shape: one node at a time, the cooldown paces it.
		perNode = deficit
	}
	add := int((deficit + perNode - 1) / perNode)
	d.Resize = resizeTo(in, d, max(d.Size+add, in.Min))
}

// resizeTo applies Max and the cooldown to a target size, returning 0
// when no resize should happen.
func resizeTo(in Input, d *Decision, target int) int {
	if target > in.Max {
		d.Notes = append(d.Notes, fmt.Sprintf("pool wants %d nodes, capped at maximum-node-pool-size %d", target, in.Max))
		target = in.Max
	}
	if target <= d.Size {
		return 0
	}
	if in.Now.Before(in.CooldownUntil) {
		d.Notes = append(d.Notes, fmt.Sprintf("resize to %d held: cooldown until %s", target, in.CooldownUntil.Format(time.RFC3339)))
		return 0
	}
	return target
}

// reopenable lists ready Swell-cordoned nodes, fullest first.
func reopenable(nodes []NodeState) []NodeState {
	var out []NodeState
	for _, n := range nodes {
		if n.Ready && n.Cordoned && n.SwellCordoned && !n.Deleting {
			out = append(out, n)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].ServerPods != out[j].ServerPods {
			return out[i].ServerPods > out[j].ServerPods
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// balance decides which ready nodes stay open when the free slots cover
// the need. Candidates are the ready nodes with at least one free slot
// that are open or Swell-cordoned; they are ranked emptiest first (fewest
// servers, then already Swell-cordoned, then most free slots, then name)
// and closed in that order while the slots of the open ones still cover
// the need. A node whose slots cannot be spared stays open, and so does
// every node with more servers than it: closing those instead would keep
// an emptier node that could go. The result is a function of the current
// nodes only, which is what makes the outcome independent of how
// departures are batched; the tie-break on the current cordon keeps it
// stable from one pass to the next. It returns the open nodes to cordon
// (emptiest first) and the Swell-cordoned nodes to reopen (fullest first).
func balance(nodes []NodeState, slot policy.Resources, need int64) (cordon, uncordon []string) {
	cands, total := balanceCandidates(nodes, slot)
	spare := total - need
	closed := map[string]bool{}
	stopAbove := -1 // servers of the first node that had to stay open
	for _, c := range cands {
		if stopAbove >= 0 && c.ServerPods > stopAbove {
			break
		}
		if c.free > spare {
			if stopAbove < 0 {
				stopAbove = c.ServerPods
			}
			continue
		}
		spare -= c.free
		closed[c.Name] = true
	}
	for _, c := range cands {
		switch {
		case closed[c.Name] && !c.Cordoned:
			cordon = append(cordon, c.Name)
		case !closed[c.Name] && c.Cordoned:
			uncordon = append(uncordon, c.Name)
		}
	}
	slices.Reverse(uncordon)
	return cordon, uncordon
}

// candidate is a node balance may open or close, with its free slots
// counted as if it were open.
type candidate struct {
	NodeState
	free int64
}

// balanceCandidates ranks the nodes balance may act on, emptiest first,
// and sums their free slots (cordoned ones counted as if open).
func balanceCandidates(nodes []NodeState, slot policy.Resources) ([]candidate, int64) {
	var cands []candidate
	var total int64
	for _, n := range nodes {
		if !n.Ready || n.Deleting || (n.Cordoned && !n.SwellCordoned) {
			continue
		}
		free := policy.FreeSlots(policy.NodeCapacity{Allocatable: n.Allocatable, Requested: n.Requested}, slot)
		if free <= 0 {
			continue
		}
		cands = append(cands, candidate{n, free})
		total += free
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		switch {
		case a.ServerPods != b.ServerPods:
			return a.ServerPods < b.ServerPods
		case a.Cordoned != b.Cordoned:
			return a.Cordoned
		case a.free != b.free:
			return a.free > b.free
		}
		return a.Name < b.Name
	})
	return cands, total
}

// expired lists Swell-cordoned nodes empty for at least the expiry, empty
// longest first, as many as the minimum allows.
func expired(in Input, size int, skip map[string]bool) []string {
	var cands []NodeState
	for _, n := range in.Nodes {
		if !n.Cordoned || !n.SwellCordoned || n.Deleting || skip[n.Name] || n.ServerPods > 0 {
			continue
		}
		if n.EmptySince.IsZero() || in.Now.Sub(n.EmptySince) < in.EmptyNodeExpiry {
			continue
		}
		cands = append(cands, n)
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if !cands[i].EmptySince.Equal(cands[j].EmptySince) {
			return cands[i].EmptySince.Before(cands[j].EmptySince)
		}
		return cands[i].Name < cands[j].Name
	})
	var out []string
	for _, n := range cands {
		if size <= in.Min {
			break
		}
		size--
		out = append(out, n.Name)
	}
	return out
}

// capacity is the node as policy.FreeSlots sees it.
func capacity(n NodeState) policy.NodeCapacity {
	return policy.NodeCapacity{Name: n.Name, Allocatable: n.Allocatable, Requested: n.Requested, Cordoned: n.Cordoned}
}
