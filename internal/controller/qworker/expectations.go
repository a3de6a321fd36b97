package qworker

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// expectationTTL bounds how long unobserved creations or deletions block a
// QWorker; after it the controller trusts its cache again (as the ReplicaSet
// controller does), so a lost watch event cannot wedge a pool forever.
const expectationTTL = 2 * time.Minute

// expectations remember pod creations, deletions and retirement marks the
// controller made but its informer cache has not shown yet. While any are outstanding, the pool
// is not re-planned: the cache would under-count and the controller would
// create the same pods twice (or retire more than asked).
type expectations struct {
	mu   sync.Mutex
	byQW map[types.NamespacedName]*expectation
}

type expectation struct {
	adds int
	// changed names pods whose deletion or retirement mark the cache must
	// still show.
	changed map[string]struct{}
	since   time.Time
}

func newExpectations() *expectations {
	return &expectations{byQW: map[types.NamespacedName]*expectation{}}
}

// expect records n creations and the named pod changes for key.
func (e *expectations) expect(key types.NamespacedName, now time.Time, creations int, changes []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.byQW[key]
	if x == nil {
		x = &expectation{changed: map[string]struct{}{}}
		e.byQW[key] = x
	}
	x.adds += creations
	for _, name := range changes {
		x.changed[name] = struct{}{}
	}
	x.since = now
}

// created is called when the cache shows a new pod of key.
func (e *expectations) created(key types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x := e.byQW[key]; x != nil && x.adds > 0 {
		x.adds--
	}
}

// createFailed undoes one expected creation the API refused.
func (e *expectations) createFailed(key types.NamespacedName) { e.created(key) }

// observed is called when the cache shows pod name of key deleted or marked
// for retirement (or the change failed and will not happen).
func (e *expectations) observed(key types.NamespacedName, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x := e.byQW[key]; x != nil {
		delete(x.changed, name)
	}
}

// observedOrphan settles the expected change of pod name in namespace ns
// whichever QWorker expected it, and returns those QWorkers. It is for
// events of a pod that no longer names its QWorker: a QScaler-SDK worker
// drops its owner reference as it leaves, possibly just before the
// controller's mark or delete lands, and the events that show the change
// then carry no owner to find the expectation by. Without this the
// QWorker would wait out expectationTTL.
func (e *expectations) observedOrphan(ns, name string) []types.NamespacedName {
	e.mu.Lock()
	defer e.mu.Unlock()
	var keys []types.NamespacedName
	for key, x := range e.byQW {
		if key.Namespace != ns {
			continue
		}
		if _, ok := x.changed[name]; ok {
			delete(x.changed, name)
			keys = append(keys, key)
		}
	}
	return keys
}

// satisfied reports whether key has nothing outstanding (or it expired).
func (e *expectations) satisfied(key types.NamespacedName, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.byQW[key]
	if x == nil {
		return true
	}
	if (x.adds <= 0 && len(x.changed) == 0) || now.Sub(x.since) > expectationTTL {
		delete(e.byQW, key)
		return true
	}
	return false
}

// forget drops everything about key (the QWorker was deleted).
func (e *expectations) forget(key types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.byQW, key)
}
