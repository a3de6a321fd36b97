package externalscaler

import (
	"math"
	"time"
)

// PartitionOffsets are one partition's offsets as Kafka reports them.
type PartitionOffsets struct {
	// Start is the log start offset (the oldest record still kept).
	Start int64
	// End is the high-water mark (the offset the next record gets).
	End int64
	// Committed is the group's committed offset, or -1 when it has none.
	Committed int64
}

// LagTotals sums a group's progress over its partitions.
type LagTotals struct {
	// Lag is the records not yet consumed.
	Lag int64
	// Position is the sum of the offsets the group consumes from next;
	// its growth over time is the consumption rate.
	Position int64
	// End is the sum of the high-water marks; its growth is the
	// production rate.
	End int64
	// Partitions counted.
	Partitions int
}

// SumLag applies Swell's per-partition lag rule (the same as
// pkg/source/kafka) and sums it:
//
//	position = max(committed, start)   (start when there is no commit)
//	lag      = max(end - position, 0)
//
// A partition without a commit counts every record still in the log, as a
// consumer with auto.offset.reset=earliest would read them all; a commit
// older than the log start counts only records that still exist.
func SumLag(parts []PartitionOffsets) LagTotals {
	var t LagTotals
	for _, p := range parts {
		pos := max(p.Committed, p.Start)
		t.Lag += max(p.End-pos, 0)
		t.Position += pos
		t.End += p.End
	}
	t.Partitions = len(parts)
	return t
}

// ETASeconds is the time to drain lag at the observed consumption rate
// (records per second), with a rule for a rate of zero:
//
//	lag <= 0             → 0 (nothing to do)
//	rate <= 0 (or NaN)   → capSeconds (work waits and nobody consumes it:
//	                        as urgent as it gets)
//	otherwise            → min(lag / rate, capSeconds)
//
// The cap keeps the metric finite so the HPA's ratio stays meaningful.
func ETASeconds(lag int64, rate, capSeconds float64) float64 {
	if lag <= 0 {
		return 0
	}
	if !(rate > 0) {
		return capSeconds
	}
	return math.Min(float64(lag)/rate, capSeconds)
}

// azulDoomed is the value the Azul scaler reports when its ETA passes a
// million: "falling behind without hope", kept for compatibility.
const azulDoomed = 9999999

// AzulBacklog reproduces the Azul scaler's "backlog" metric from the same
// inputs it uses (records added and processed over the sampling span and
// the current lag), so a migrated ScaledObject keeps its targetSize:
//
//   - nothing processed in the span → the raw lag;
//   - otherwise rate = (processed − added) per minute; a rate below 1
//     (falling behind) becomes 1 when lag ≤ 2, else 1 − min(√(1−rate),
//     100)/100, which inflates the ETA the faster the queue grows;
//   - backlog = lag ÷ rate, minutes to drain at the net rate;
//   - above 1,000,000 it is reported as 9,999,999.
func AzulBacklog(lag, added, processed int64, span time.Duration) float64 {
	if processed == 0 {
		return capAzul(float64(lag))
	}
	minutes := span.Minutes()
	if minutes <= 0 {
		minutes = 1
	}
	rate := float64(processed-added) / minutes
	if rate < 1 {
		rate = azulSlowRate(rate, lag)
	}
	return capAzul(float64(lag) / rate)
}

func azulSlowRate(rate float64, lag int64) float64 {
	if lag <= 2 {
		return 1
	}
	r := math.Min(math.Sqrt(-rate+1), 100)
	r = 1 - r/100
	if r < 0.0001 {
		return 1
	}
	return r
}

func capAzul(v float64) float64 {
	if v > 1e6 {
		return azulDoomed
	}
	return v
}

// progressPoint is one poll's totals, kept for the rate window.
type progressPoint struct {
	at       time.Time
	position int64
	end      int64
}

// rateWindow keeps the polls of the last window to derive the consumption
// rate: (position now − position at the window's oldest poll) ÷ elapsed.
type rateWindow struct {
	window time.Duration
	points []progressPoint
}

// add records a poll and drops polls older than the window (keeping at
// least one older point so the span covers the window).
func (w *rateWindow) add(p progressPoint) {
	w.points = append(w.points, p)
	cut := 0
	for cut < len(w.points)-2 && p.at.Sub(w.points[cut+1].at) >= w.window {
		cut++
	}
	w.points = w.points[cut:]
}

// progress is the growth over the window: records consumed, records
// produced, and the time it took. ok is false with fewer than two polls.
func (w *rateWindow) progress() (consumed, produced int64, span time.Duration, ok bool) {
	if len(w.points) < 2 {
		return 0, 0, 0, false
	}
	first, last := w.points[0], w.points[len(w.points)-1]
	span = last.at.Sub(first.at)
	if span <= 0 {
		return 0, 0, 0, false
	}
	// A group reset or a recreated topic moves offsets backwards: count no
	// progress rather than a negative rate.
	return max(last.position-first.position, 0), max(last.end-first.end, 0), span, true
}

// rate is consumed records per second over the window, 0 when unknown.
func (w *rateWindow) rate() float64 {
	consumed, _, span, ok := w.progress()
	if !ok {
		return 0
	}
	return float64(consumed) / span.Seconds()
}
