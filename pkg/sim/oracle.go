package sim

import (
	"slices"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// runOracle computes the oracle lower bound. The oracle has no start
// latency and can move work between pods, so at every instant it runs
// exactly ceil(tasks in service / concurrency) pods (the queue-proportional
// sizing over in-flight work); tasks start on arrival unless MaxReplicas
// times concurrency slots are all busy, in which case they wait FIFO.
func runOracle(sc *Scenario, tasks []Task) Result {
	c := sc.Workers.Concurrency
	slots := int(sc.Workers.MaxReplicas) * c
	sizing := policy.QueueSizing{MaxReplicas: sc.Workers.MaxReplicas, ScalingFactor: 1 / float64(c), CountInFlight: true}
	horizon := sc.Duration.Seconds()

	waits := make([]float64, len(tasks))
	var busy slotHeap // completion times of busy slots
	type change struct {
		at    float64
		delta int
	}
	changes := make([]change, 0, 2*len(tasks))
	for i, t := range tasks {
		start := t.Arrival
		for busy.len() > 0 && busy.min() <= start {
			busy.pop()
		}
		if busy.len() >= slots {
			start = busy.pop()
		}
		waits[i] = start - t.Arrival
		busy.push(start + t.Service)
		changes = append(changes, change{start, +1}, change{start + t.Service, -1})
	}
	slices.SortStableFunc(changes, func(a, b change) int {
		switch {
		case a.at < b.at:
			return -1
		case a.at > b.at:
			return 1
		}
		return a.delta - b.delta // ends before starts: a slot freed and reused at one instant is one pod
	})

	res := Result{Tasks: len(tasks)}
	inFlight, pods, prevPods := 0, 0, 0
	last := 0.0
	nextSample := 0.0
	step := sc.SampleEvery.Seconds()
	for _, ch := range changes {
		if ch.at > horizon {
			break
		}
		for nextSample <= ch.at && nextSample <= horizon {
			res.Series = append(res.Series, Point{T: nextSample, Pods: pods, Replicas: pods, Ready: pods, InFlight: inFlight})
			nextSample += step
		}
		res.PodSeconds += float64(pods) * (ch.at - last)
		last = ch.at
		inFlight += ch.delta
		pods = int(sizing.Desired(policy.QueueSample{InFlight: int64(inFlight)}))
		if pods != prevPods {
			res.ScaleEvents++
			prevPods = pods
		}
		res.MaxPods = max(res.MaxPods, pods)
	}
	res.PodSeconds += float64(pods) * (horizon - last)
	for ; nextSample <= horizon; nextSample += step {
		res.Series = append(res.Series, Point{T: nextSample, Pods: pods, Replicas: pods, Ready: pods, InFlight: inFlight})
	}
	res.MaxBacklog = oracleMaxBacklog(tasks, waits)
	fillWaits(&res, waits)
	return res
}

// oracleMaxBacklog is the most tasks waiting at once (only when every slot
// up to MaxReplicas is busy).
func oracleMaxBacklog(tasks []Task, waits []float64) int {
	type ev struct {
		at    float64
		delta int
	}
	var evs []ev
	for i, w := range waits {
		if w > 0 {
			evs = append(evs, ev{tasks[i].Arrival, 1}, ev{tasks[i].Arrival + w, -1})
		}
	}
	slices.SortStableFunc(evs, func(a, b ev) int {
		if a.at != b.at {
			if a.at < b.at {
				return -1
			}
			return 1
		}
		return a.delta - b.delta
	})
	n, peak := 0, 0
	for _, e := range evs {
		n += e.delta
		peak = max(peak, n)
	}
	return peak
}

// slotHeap is a min-heap of slot completion times.
type slotHeap struct{ items []float64 }

func (h *slotHeap) len() int     { return len(h.items) }
func (h *slotHeap) min() float64 { return h.items[0] }

func (h *slotHeap) push(v float64) {
	h.items = append(h.items, v)
	for i := len(h.items) - 1; i > 0; {
		p := (i - 1) / 2
		if h.items[p] <= h.items[i] {
			break
		}
		h.items[p], h.items[i] = h.items[i], h.items[p]
		i = p
	}
}

func (h *slotHeap) pop() float64 {
	top := h.items[0]
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	h.items = h.items[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && h.items[l] < h.items[m] {
			m = l
		}
		if r < last && h.items[r] < h.items[m] {
			m = r
		}
		if m == i {
			break
		}
		h.items[i], h.items[m] = h.items[m], h.items[i]
		i = m
	}
	return top
}
