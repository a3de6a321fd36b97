// Package shard lets several replicas of the controller serve QWorkers,
// PodAutoscalers and ScalerConfigs side by side, each object served by
// exactly one replica at a time, instead of one elected leader doing all
// the work while the others wait.
//
// It follows the protocol of timebertt/kubernetes-controller-sharding
// (a ring of Leases, one per replica; consistent hashing of objects to
// replicas; an object's owner recorded in a label; a hand-over in which
// the old owner lets go before the new one acts), without its separate
// sharder Deployment: every replica runs the assignment for the objects it
// should own, and the label's optimistic-concurrency writes decide any race.
//
//   - Ring: each replica holds a Lease named after its identity, labelled
//     with the ring's name, and renews it. The live members are the leases
//     renewed within their duration.
//   - Owner: rendezvous (highest random weight) hashing of the object's
//     namespace/name over the live members: adding a replica moves about
//     1/n of the objects, removing one moves only its own.
//   - Label: LabelOwner on the object names the replica that may act on
//     it. Only that replica acts. The label changes in two ways only: the
//     owner hands the object to the replica the hash now names (it stops
//     acting with that write), or, once the owner's lease has expired, the
//     replica the hash names takes it.
//   - Guard: a replica's writes go through a leaderguard.Guard fed by its
//     own lease renewals, so a replica that could not renew for the renew
//     deadline (shorter than the lease duration the others wait) writes
//     nothing, and one whose lease lapsed exits and restarts with a fresh
//     cache rather than act on a stale one.
//
// Decide is the pure decision; Reconciler wraps a kind's reconciler with
// it; Ring does the Lease I/O.
package shard
