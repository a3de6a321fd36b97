// Package nodepool keeps a buffer of free server slots on a node pool that
// runs stateful dedicated servers (game servers, long sessions): it cordons
// surplus nodes so they drain, uncordons them before paying for new nodes,
// grows the pool through a [provider.Provider], and deletes nodes that Swell
// cordoned once they have been empty of server pods for an expiry, after
// draining their other pods through the Eviction API ([AssessDrain] decides
// what blocks a node). It reads kubescaler's configuration keys, so a
// kubescaler deployment moves over unchanged.
//
// The package follows Swell's pipeline: informers give a snapshot (the
// source), [Plan] decides on plain data with no client calls (the policy,
// built on [policy.FreeSlots]), and the [Scaler] applies the decision
// (cordon, uncordon, resize, drain and delete) and reports it as events,
// logs and Prometheus metrics. A [Cache] can serve many Scalers, and a
// [State] carries a pool's cooldown and deletions in flight to the next
// Scaler of the same pool.
package nodepool
