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
	// QWorkerScaleDownWindow is the least scale-down stabilisation of a
	// QWorker whose behavior.scaleDown.stabilizationWindowSeconds is unset
	// (see [QWorkerDownWindow]): a queue that reads empty for a moment,
	// between two batches or while every worker holds a task, does not
	// retire workers that the next poll would create again. It is two
	// default polls, far shorter than the HPA's 300 s: in the simulator
	// every longer window cost more pod-hours on every shipped workload
	// (docs/qworker.md#scale-down-stabilisation).
	QWorkerScaleDownWindow = 10 * time.Second
)

// QWorkerDownWindow is the default scale-down stabilisation of a QWorker
// polled every interval: QWorkerScaleDownWindow, or two polling intervals
// when longer, so at least two measurements agree before the pool shrinks.
func QWorkerDownWindow(interval time.Duration) time.Duration {
	return max(QWorkerScaleDownWindow, 2*interval)
}

// QWorkerPolicy is everything that shapes a QWorker's replica decision.
type QWorkerPolicy struct {
	// Sizing is scalingFactor, min/max, activation and countInFlight.
	Sizing QueueSizing
	// Behavior, when set, rate-limits and stabilises like an HPA.
	Behavior *Behavior
	// DownWindow is the scale-down stabilisation wherever Behavior leaves
	// it unset (Behavior nil included): the pool shrinks only to the
	// highest count asked for within it. 0 turns it off.
	DownWindow time.Duration
	// Fallback says what to do while the source fails.
	Fallback Fallback
}

// QWorkerDefaults is the policy of a QWorker that sets only the fields
// QScaler has (minReplicas, maxReplicas, scalingFactor): no activation
// threshold, queued messages only, no behavior, the default scale-down
// stabilisation of the default polling interval, and fallback holding the
// count for QWorkerFailureThreshold failures.
func QWorkerDefaults(minReplicas, maxReplicas int32, scalingFactor float64) QWorkerPolicy {
	return QWorkerPolicy{
		Sizing:     QueueSizing{MinReplicas: minReplicas, MaxReplicas: maxReplicas, ScalingFactor: scalingFactor},
		DownWindow: QWorkerDownWindow(QWorkerPollingInterval),
		Fallback:   Fallback{FailureThreshold: QWorkerFailureThreshold},
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
// source's failure run and the stabilisation history (bounded: see
// [DownscaleStabilizer] and [Normalizer]). The zero value is ready.
type QWorkerMemory struct {
	guard       FallbackGuard
	down        DownscaleStabilizer
	started     bool
	normalizer  *Normalizer
	behaviorKey string
}

// Settled is a raw count after fallback, stabilisation and behavior.
type Settled struct {
	// Desired is the count to run.
	Desired int32
	// FallingBack reports that the source failed and the guard decided.
	FallingBack bool
	// Limited reports that stabilisation, behavior or a lowered maximum
	// changed the raw count; Why says how.
	Limited bool
	Why     Reason
}

// Failures is the current run of consecutive source failures.
func (m *QWorkerMemory) Failures() int { return m.guard.Failures() }

// Settle turns a raw count (what the sizing asks for) into the count to
// run, given the previous decision: on a failed measurement the fallback
// guard holds previous (or applies fallback.replicas); otherwise behavior,
// when set, stabilises and rate-limits the change, and without it the
// default stabilisation holds scale-downs for p.DownWindow. The result is
// always within [minReplicas, maxReplicas], so a lowered maximum (or a
// raised minimum) applies at once, never stabilised.
func (m *QWorkerMemory) Settle(now time.Time, p QWorkerPolicy, previous, raw int32, measureErr error) Settled {
	m.guard.Policy = p.Fallback
	held, fallingBack := m.guard.Apply(previous, raw, measureErr)
	out := Settled{Desired: held, FallingBack: fallingBack}
	switch {
	case fallingBack:
	case p.Behavior != nil:
		out.Desired, out.Why = m.normalize(now, p, previous, raw)
	default:
		out.Desired, out.Why = m.holdDown(now, p.DownWindow, previous, raw)
	}
	switch {
	case out.Desired > p.Sizing.MaxReplicas:
		out.Desired, out.Why = p.Sizing.MaxReplicas, ReasonTooManyReplicas
	case out.Desired < p.Sizing.MinReplicas:
		out.Desired, out.Why = p.Sizing.MinReplicas, ReasonTooFewReplicas
	}
	out.Limited = !fallingBack && out.Desired != raw
	if p.Behavior != nil && !fallingBack && out.Desired != previous {
		m.normalizer.RecordScale(now, previous, out.Desired)
	}
	return out
}

// holdDown is the default stabilisation: a count below previous is raised
// to the highest count asked for within window, never above previous. The
// first decision also counts previous (the pods it starts from), so a
// restarted controller does not retire workers on its first low reading.
func (m *QWorkerMemory) holdDown(now time.Time, window time.Duration, previous, raw int32) (int32, Reason) {
	m.down.Window = window
	if !m.started {
		m.started = true
		m.down.Stabilize(now, previous)
	}
	highest := m.down.Stabilize(now, raw)
	if held := min(highest, previous); held > raw {
		return held, ReasonScaleDownStabilize
	}
	return raw, ReasonDesiredWithinRange
}

// normalize applies the user's behavior, its unset scale-down window being
// p.DownWindow.
func (m *QWorkerMemory) normalize(now time.Time, p QWorkerPolicy, previous, raw int32) (int32, Reason) {
	b := *p.Behavior
	if b.ScaleDown.StabilizationWindow == nil {
		w := p.DownWindow
		b.ScaleDown.StabilizationWindow = &w
	}
	return m.normalizerFor(&b).Normalize(now, previous, raw, p.Sizing.MinReplicas, p.Sizing.MaxReplicas)
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
