package nodepool

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// State is what a pool's scaler remembers from pass to pass beyond the
// cluster itself: the resize cooldown, the nodes it asked the provider to
// delete, the drains under way, and the last reason reported for each node
// kept. It outlives a Scaler: the NodePoolScaler controller hands it to the
// Scaler it builds after a spec edit, so an edit neither restarts the
// cooldown nor forgets a deletion in flight (which could ask the provider
// to delete the same node twice).
type State struct {
	mu            sync.Mutex
	cooldownUntil time.Time
	// deleting holds nodes handed to provider.Delete, until they leave
	// the cache.
	deleting map[string]time.Time
	// drains holds, per node chosen for deletion, when Swell first looked
	// at it or last found it not clean (evicting, pods terminating).
	drains map[string]time.Time
	// reported is the last blocked message per node, so a node that stays
	// blocked raises one event, not one per pass.
	reported map[string]string
	// emptySince holds the expiry clocks this scaler wrote and the cache
	// has not shown yet, so a pass that reads a stale node does not start
	// the clock again later than it began.
	emptySince map[string]time.Time
}

// NewState is a pool's state before its first pass.
func NewState() *State {
	return &State{
		deleting: map[string]time.Time{}, drains: map[string]time.Time{}, reported: map[string]string{},
		emptySince: map[string]time.Time{},
	}
}

func (st *State) cooldown() time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cooldownUntil
}

func (st *State) startCooldown(until time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.cooldownUntil = until
}

func (st *State) isDeleting(node string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	_, ok := st.deleting[node]
	return ok
}

func (st *State) markDeleting(node string, at time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.deleting[node] = at
	delete(st.drains, node)
}

func (st *State) unmarkDeleting(node string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.deleting, node)
}

// forgetGone drops every record of nodes no longer in the cache.
func (st *State) forgetGone(present map[string]*corev1.Node) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, m := range []map[string]time.Time{st.deleting, st.drains, st.emptySince} {
		for name := range m {
			if present[name] == nil {
				delete(m, name)
			}
		}
	}
	for name := range st.reported {
		if present[name] == nil {
			delete(st.reported, name)
		}
	}
}

// wroteEmptySince records an expiry clock this scaler wrote to a node
// (zero time: it cleared the clock).
func (st *State) wroteEmptySince(node string, since time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if since.IsZero() {
		delete(st.emptySince, node)
		return
	}
	st.emptySince[node] = since
}

// pendingEmptySince is the expiry clock this scaler wrote to a node whose
// cached copy does not carry it yet. Once the cache shows the same value
// the record is dropped, so a clock removed later by someone else starts
// afresh.
func (st *State) pendingEmptySince(node *corev1.Node) (time.Time, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	at, ok := st.emptySince[node.Name]
	if !ok {
		return time.Time{}, false
	}
	if seen, valid := timeAnnotation(node, EmptySinceAnnotation); valid && seen.Equal(at) {
		delete(st.emptySince, node.Name)
		return time.Time{}, false
	}
	return at, true
}

// keepDrains forgets the drains of nodes the plan no longer wants gone
// (uncordoned, a server pod back, a resize in this pass): a later drain
// starts afresh, with its own validation delay.
func (st *State) keepDrains(names []string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	keep := make(map[string]bool, len(names))
	for _, n := range names {
		keep[n] = true
	}
	for name := range st.drains {
		if !keep[name] {
			delete(st.drains, name)
		}
	}
	for name := range st.reported {
		if !keep[name] {
			delete(st.reported, name)
		}
	}
}

// beginDrain returns when the node's drain began (or last restarted), and
// whether this call began it.
func (st *State) beginDrain(node string, now time.Time) (time.Time, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if at, ok := st.drains[node]; ok {
		return at, false
	}
	st.drains[node] = now
	return now, true
}

// restartDrain restarts the validation delay: the node was not clean.
func (st *State) restartDrain(node string, now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.drains[node] = now
}

func (st *State) forgetDrain(node string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.drains, node)
}

// noteBlocked records why a node is kept and reports whether that is news.
func (st *State) noteBlocked(node, msg string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.reported[node] == msg {
		return false
	}
	st.reported[node] = msg
	return true
}

// Deleting lists the nodes handed to the provider for deletion that are
// still in the cache; for tests and status.
func (st *State) Deleting() []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]string, 0, len(st.deleting))
	for n := range st.deleting {
		out = append(out, n)
	}
	return out
}

// CooldownUntil is the end of the resize cooldown.
func (st *State) CooldownUntil() time.Time { return st.cooldown() }

// clearBlocked forgets the last blocked message: the node made progress.
func (st *State) clearBlocked(node string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.reported, node)
}
