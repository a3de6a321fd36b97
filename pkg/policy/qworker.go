package policy

import (
	"fmt"
	"time"
)

// Defaults for the fields a QWorker adds to QScaler's API. The QWorker
// controller decodes its objects with them, and the simulator's swell
// policy runs with them, so a simulated QWorker is one with default
// settings.
const (
	// QWorkerPollingInterval is how often the queue is measured (QScaler's
	// period) when pollingIntervalSeconds is unset.
	QWorkerPollingInterval = 5 * time.Second
	// QWorkerFailureThreshold is fallback.failureThreshold when unset.
	QWorkerFailureThreshold = 3
)

// QWorkerPolicy is everything that shapes a QWorker's replica decision.
type QWorkerPolicy struct {
	// Sizing is scalingFactor, min/max, activation and countInFlight.
	Sizing QueueSizing
	// Behavior, when set, rate-limits and stabilises like an HPA.
	Behavior *Behavior
	// Fallback says what to do while the source fails.
	Fallback Fallback
}

// QWorkerDefaults is the policy of a QWorker that sets only the fields
// QScaler has (minReplicas, maxReplicas, scalingFactor): no activation
// threshold, queued messages only, no behavior, and fallback holding the
// count for QWorkerFailureThreshold failures.
func QWorkerDefaults(minReplicas, maxReplicas int32, scalingFactor float64) QWorkerPolicy {
	return QWorkerPolicy{
		Sizing:   QueueSizing{MinReplicas: minReplicas, MaxReplicas: maxReplicas, ScalingFactor: scalingFactor},
		Fallback: Fallback{FailureThreshold: QWorkerFailureThreshold},
	}
}

// QueueReading is one measurement of a queue as sources report it: Ready
// (waiting) and InFlight (taken, not acknowledged), or only Backlog for
// sources that know just the total.
type QueueReading struct {
	Ready    int64
	InFlight int64
	Backlog  int64
}

// Ratio is what scalingFactor asks for: Sizing.Desired over the reading's
// queued and in-flight messages, or over Backlog when the source reports
// only the total.
func (p QWorkerPolicy) Ratio(r QueueReading) int32 {
	if r.Ready == 0 && r.InFlight == 0 && r.Backlog > 0 {
		return p.Sizing.Desired(QueueSample{Queued: r.Backlog})
	}
	return p.Sizing.Desired(QueueSample{Queued: r.Ready, InFlight: r.InFlight})
}

// Initial is the count a QWorker's first decision starts from: the pods
// that exist, within min and max.
func (p QWorkerPolicy) Initial(active int32) int32 {
	return min(max(active, p.Sizing.MinReplicas), p.Sizing.MaxReplicas)
}

// QWorkerMemory is what a QWorker decision remembers between passes: the
// source's failure run and the behavior's history. The zero value is ready.
type QWorkerMemory struct {
	guard       FallbackGuard
	normalizer  *Normalizer
	behaviorKey string
}

// Settled is a raw count after fallback and behavior.
type Settled struct {
	// Desired is the count to run.
	Desired int32
	// FallingBack reports that the source failed and the guard decided.
	FallingBack bool
	// Limited reports that behavior changed the raw count; Why says how.
	Limited bool
	Why     Reason
}

// Failures is the current run of consecutive source failures.
func (m *QWorkerMemory) Failures() int { return m.guard.Failures() }

// Settle turns a raw count (what the sizing asks for) into the count to
// run, given the previous decision: on a failed measurement the fallback
// guard holds previous (or applies fallback.replicas), otherwise behavior,
// when set, stabilises and rate-limits the change.
func (m *QWorkerMemory) Settle(now time.Time, p QWorkerPolicy, previous, raw int32, measureErr error) Settled {
	m.guard.Policy = p.Fallback
	held, fallingBack := m.guard.Apply(previous, raw, measureErr)
	out := Settled{Desired: held, FallingBack: fallingBack}
	if fallingBack || p.Behavior == nil {
		return out
	}
	n := m.normalizerFor(p.Behavior)
	out.Desired, out.Why = n.Normalize(now, previous, raw, p.Sizing.MinReplicas, p.Sizing.MaxReplicas)
	out.Limited = out.Desired != raw
	if out.Desired != previous {
		n.RecordScale(now, previous, out.Desired)
	}
	return out
}

// normalizerFor keeps one normalizer per behavior, starting afresh when
// the behavior changes (by value: a spec decoded again each pass keeps its
// history).
func (m *QWorkerMemory) normalizerFor(b *Behavior) *Normalizer {
	key := behaviorKey(b)
	if m.normalizer == nil || m.behaviorKey != key {
		m.normalizer = NewNormalizer(*b)
		m.behaviorKey = key
	}
	return m.normalizer
}

// behaviorKey identifies a behavior by value; stabilisation windows are
// pointers, so formatting the struct itself would name their addresses.
func behaviorKey(b *Behavior) string {
	rules := func(r ScalingRules) string {
		w := "unset"
		if r.StabilizationWindow != nil {
			w = r.StabilizationWindow.String()
		}
		return fmt.Sprintf("%s/%s/%v", w, r.SelectPolicy, r.Policies)
	}
	return rules(b.ScaleUp) + "|" + rules(b.ScaleDown)
}
