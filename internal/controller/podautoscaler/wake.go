package podautoscaler

import (
	"k8s.io/apimachinery/pkg/types"

	"github.com/swell-autoscaler/swell/pkg/source"
)

// idleAfter reports whether res left the target idle: known to be at zero
// replicas with autoscaling enabled (the CPA rule disables it at zero when
// minReplicas is not 0). It is the push gate's rule: a wake-up from the
// metric source (Redis keyspace notifications, NATS JetStream; see
// internal/controller/pushwake) runs a pass at once only while the object
// is idle, and is dropped otherwise, the next interval pass seeing the
// change. Why:
//
//   - At zero nothing consumes the queue, so a message would wait up to
//     intervalSeconds for its first worker: that is the latency push is
//     for, and the pass it runs is a scale-up from zero.
//   - Above zero, workers are draining the queue and intervalSeconds is the
//     cadence the user chose for resizing them (and for the load passes put
//     on the broker and the API server). Every push and every consumer's
//     pop notifies, so a pass per wake-up would turn a 300 s interval into
//     many passes a second on a busy queue.
//   - The interval schedule is kept: a wake-up pass's RequeueAfter does not
//     move the pending interval requeue, since the controller's queue keeps
//     the earlier of two delayed adds, so polls go on as before.
//   - The stabilisation windows hold: downscaleStabilizationSeconds and the
//     behavior windows and rate policies are computed from the times of
//     recorded decisions and scales, not from a count of passes, and a
//     wake-up pass goes through the same decide step at the real time. An
//     extra pass only adds a sample: downscale stabilisation still keeps the
//     highest decision of its window, a scaleUp stabilizationWindow still
//     holds the target at zero until its window has passed (a later wake-up
//     or the poll then scales it), and rate policies still count every scale
//     of their period.
//
// A wake-up arriving while the scale-from-zero pass runs may queue one more
// pass right after it; that pass decides like any other under the same
// windows. A failed pass counts as idle when it read the target at zero (the
// metric or the scale failed), so the next message retries; a pass that
// could not read the target does not.
func idleAfter(res *result) bool {
	if !res.HaveTarget || res.Disabled {
		return false
	}
	after := res.Current
	if res.Scaled {
		after = res.Desired
	}
	return after == 0
}

// subscription says what the pass means for the push subscription.
type subscription int

const (
	// keepSubscription leaves any running subscription alone: the source
	// could not be obtained this pass, which must not end push for good.
	keepSubscription subscription = iota
	// ensureSubscription starts or restarts one on the pass's source.
	ensureSubscription
	// stopSubscription ends it: the spec measures no source (or is invalid).
	stopSubscription
)

// subscriptionAfter decides from the spec and the source the pass
// measured (nil when it measured none).
func subscriptionAfter(spec paSpec, measured source.Source) subscription {
	switch {
	case spec.Source == nil:
		return stopSubscription
	case measured != nil:
		return ensureSubscription
	default:
		return keepSubscription
	}
}

// wakeAllowed is the push gate: a wake-up becomes a pass only while the
// object is idle (see idleAfter). It runs on a subscription goroutine.
func (r *Reconciler) wakeAllowed(key types.NamespacedName) bool {
	r.mu.Lock()
	st := r.states[key]
	r.mu.Unlock()
	return st != nil && st.idle.Load()
}
