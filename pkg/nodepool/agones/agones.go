// Package agones reads slot occupancy from Agones GameServers (group
// agones.dev, version v1) instead of from labelled pods: on a cluster that
// runs Agones, an Allocated (or Reserved) GameServer is a slot in use and
// must never lose its node, while a Ready one is a warm, empty slot that
// Agones' own Fleet can move. It is pure: callers list GameServers (an
// informer on the dynamic client) and pass the decoded states here.
package agones

import (
	"errors"
	"fmt"
	"sort"
)

// GameServer states, as status.state spells them in agones.dev/v1.
const (
	StatePortAllocation = "PortAllocation"
	StateCreating       = "Creating"
	StateStarting       = "Starting"
	StateScheduled      = "Scheduled"
	StateRequestReady   = "RequestReady"
	StateReady          = "Ready"
	StateReserved       = "Reserved"
	StateAllocated      = "Allocated"
	StateShutdown       = "Shutdown"
	StateError          = "Error"
	StateUnhealthy      = "Unhealthy"
)

// GameServer is the part of an agones.dev/v1 GameServer occupancy needs.
type GameServer struct {
	Namespace, Name string
	// Node is status.nodeName; empty until the pod is scheduled.
	Node string
	// State is status.state.
	State string
	// Deleting is true once metadata.deletionTimestamp is set.
	Deleting bool
}

// FromObject decodes a GameServer from its JSON map (the dynamic
// client's Unstructured content). A missing state is an error: such an
// object cannot be classified, and guessing "free" could delete a node
// with players on it.
func FromObject(obj map[string]any) (GameServer, error) {
	meta, _ := obj["metadata"].(map[string]any)
	status, _ := obj["status"].(map[string]any)
	gs := GameServer{}
	gs.Namespace, _ = meta["namespace"].(string)
	gs.Name, _ = meta["name"].(string)
	if ts, ok := meta["deletionTimestamp"].(string); ok && ts != "" {
		gs.Deleting = true
	}
	gs.Node, _ = status["nodeName"].(string)
	gs.State, _ = status["state"].(string)
	if gs.Name == "" {
		return gs, errors.New("agones: GameServer without metadata.name")
	}
	if gs.State == "" && !gs.Deleting {
		return gs, fmt.Errorf("agones: GameServer %s/%s has no status.state yet", gs.Namespace, gs.Name)
	}
	return gs, nil
}

// Slots counts one node's GameServers by what they mean for its slots.
type Slots struct {
	// InUse: Allocated and Reserved servers. A node with any is busy.
	InUse int
	// Ready: warm servers with no session; their pods hold resources, but
	// for players each is a free slot.
	Ready int
	// Starting: servers on their way to Ready (PortAllocation, Creating,
	// Starting, Scheduled, RequestReady): free slots soon.
	Starting int
	// Stopping: Shutdown, Error, Unhealthy, or being deleted: going away,
	// neither free nor in use.
	Stopping int
	// Unknown: a state this package does not know (a newer Agones). It
	// counts as in use, so it blocks deletion.
	Unknown int
}

// Busy reports whether deleting the node would end a session: any
// server in use, or in a state not known to be safe.
func (s Slots) Busy() bool { return s.InUse > 0 || s.Unknown > 0 }

// Free is the slots players can take now plus those about to be ready.
func (s Slots) Free() int { return s.Ready + s.Starting }

func (s *Slots) add(gs GameServer) {
	if gs.Deleting {
		s.Stopping++
		return
	}
	switch gs.State {
	case StateAllocated, StateReserved:
		s.InUse++
	case StateReady:
		s.Ready++
	case StatePortAllocation, StateCreating, StateStarting, StateScheduled, StateRequestReady:
		s.Starting++
	case StateShutdown, StateError, StateUnhealthy:
		s.Stopping++
	default:
		s.Unknown++
	}
}

// Occupancy is the pool's slots from its GameServers.
type Occupancy struct {
	// Nodes maps a node name to its GameServers' slots.
	Nodes map[string]Slots
	// Unscheduled counts GameServers with no node yet (they need a slot
	// somewhere, as pending server pods do).
	Unscheduled Slots
}

// InUse is every in-use (or unknown) server, on a node or not: the base
// of a percentage buffer.
func (o Occupancy) InUse() int {
	n := o.Unscheduled.InUse + o.Unscheduled.Unknown
	for _, s := range o.Nodes {
		n += s.InUse + s.Unknown
	}
	return n
}

// BusyNodes lists the nodes that must not be deleted, sorted.
func (o Occupancy) BusyNodes() []string {
	var out []string
	for name, s := range o.Nodes {
		if s.Busy() {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Count classifies GameServers by node and state.
func Count(servers []GameServer) Occupancy {
	o := Occupancy{Nodes: map[string]Slots{}}
	for _, gs := range servers {
		if gs.Node == "" {
			o.Unscheduled.add(gs)
			continue
		}
		s := o.Nodes[gs.Node]
		s.add(gs)
		o.Nodes[gs.Node] = s
	}
	return o
}
