package sim

import (
	"slices"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// runOracleStartup computes the start-up-aware lower bound, the
// oracle-startup reference. The oracle is cheap partly because its pods
// start instantly; this bound keeps everything else the oracle knows (the
// whole future, work moved freely between pods) but pays start-up, so the
// report can tell how much of a policy's distance from the oracle is the
// physics of starting pods and how much is the policy's own.
//
// Definition. It runs the oracle's schedule: the same task start times
// (on arrival unless all MaxReplicas × concurrency slots are busy) and so
// the same pod-count curve n(t) = ceil(tasks in service / concurrency).
// The curve is cut into levels: level k is busy while n(t) ≥ k, a set of
// busy intervals. Each level is served by pods, one at a time. A pod is
// billed from its creation, and it must be created the start-up time s
// before the first busy interval it serves (workers.startLatency: the
// engine's start-up is that constant, so mean and per-pod draw are the
// same). Between two busy intervals of a level with a gap g, the pod is
// kept (billed the gap) when g < s, and otherwise stopped at the end of the
// first interval and a new pod created s before the second. So
//
//	pod-seconds = oracle busy pod-seconds
//	            + Σ over levels [ min(s, t_first) + Σ over gaps min(g, s) ]
//
// where t_first is the level's first busy start: billing, like the run,
// begins at 0, so a pod needed before s has passed is billed from 0 (it
// could not be ready in time; as a bound that is the least it costs). A
// level busy at the end is billed to the end of the run; a level idle at
// the end stops when its last interval ends. The engine bills pods by the
// second from creation to deletion with no minimum lifetime or billing
// granularity, so neither is added here. Node provisioning (a `nodes`
// section) is not added either: it can only lengthen a start-up.
//
// Why it is a bound. Take any policy that starts every task when this
// schedule does (zero wait where the oracle has zero wait) and let R(t) be
// its ready pods and A(t) its billed pods. R(t) ≥ n(t). Whenever R rises
// through k at time t, the new pod and the k−1 pods ready just before t
// were all billed throughout [t−s, t] (a pod ready by t was created at
// least s before), so A ≥ k there. Hence |{A ≥ k}| ≥ |{n ≥ k}| plus, for
// each rise, the part of [t−s, t] not already busy, which is min(s,
// t_first) for the first and at least min(g, s) for each gap (whether the
// policy bridges the gap, paying g, or restarts, paying the window). Since
// pod-seconds = Σ_k |{A ≥ k}|, no such policy pays less. A policy that
// lets tasks wait longer than the oracle can run fewer pods through a
// burst and skip start-ups, so at a p95 well above the oracle's this is a
// reference for what start-up costs, not a hard floor.
func runOracleStartup(sc *Scenario, tasks []Task) Result {
	horizon := sc.Duration.Seconds()
	waits, changes := oracleSchedule(sc, tasks)
	lives := levelLives(podCurve(oracleSizing(sc), changes, horizon), sc.Workers.StartLatency.Seconds(), horizon)
	res := Result{Tasks: len(tasks), PodsStarted: len(lives)}
	for _, l := range lives {
		res.PodSeconds += l.stopped - l.created
	}
	res.Series, res.MaxPods, res.ScaleEvents = lifeSeries(lives, changes, horizon, sc.SampleEvery.Seconds())
	res.MaxBacklog = oracleMaxBacklog(tasks, waits)
	fillWaits(&res, waits)
	return res
}

// podStep is the oracle's pod count from at on.
type podStep struct {
	at   float64
	pods int
}

// podCurve is the oracle's pod count over time: one step per change up to
// horizon (several at one instant are kept in order, so a pod freed and
// needed again at once shows as a zero-length gap).
func podCurve(sizing policy.QueueSizing, changes []slotChange, horizon float64) []podStep {
	var steps []podStep
	inFlight, pods := 0, 0
	for _, ch := range changes {
		if ch.at > horizon {
			break
		}
		inFlight += ch.delta
		next := int(sizing.Desired(policy.QueueSample{InFlight: int64(inFlight)}))
		if next != pods {
			steps = append(steps, podStep{ch.at, next})
			pods = next
		}
	}
	return steps
}

// podLife is one pod of the bound: billed from created to stopped, ready
// (serving) from ready on.
type podLife struct {
	created, ready, stopped float64
}

// levelState is one level of the pod curve while it is walked.
type levelState struct {
	life  podLife
	alive bool    // a pod holds the level (busy, or idle awaiting the next interval)
	busy  bool    // the level is inside a busy interval
	off   float64 // end of the last busy interval
}

// levelLives serves each level of the pod curve with pods paying start-up
// s: a gap shorter than s is bridged by the same pod, a longer one ends the
// pod and a new one is created s before the next interval (not before 0).
func levelLives(steps []podStep, s, horizon float64) []podLife {
	var levels []levelState
	var lives []podLife
	pods := 0
	for _, st := range steps {
		for len(levels) < st.pods {
			levels = append(levels, levelState{})
		}
		for k := pods; k < st.pods; k++ { // levels turning busy
			lv := &levels[k]
			lv.busy = true
			if lv.alive && st.at-lv.off < s {
				continue // bridge: keep the pod through the gap
			}
			if lv.alive {
				lv.life.stopped = lv.off
				lives = append(lives, lv.life)
			}
			lv.alive, lv.life = true, podLife{created: max(0, st.at-s), ready: st.at}
		}
		for k := st.pods; k < pods; k++ { // levels turning idle
			levels[k].busy, levels[k].off = false, st.at
		}
		pods = st.pods
	}
	for _, lv := range levels {
		if !lv.alive {
			continue
		}
		lv.life.stopped = lv.off
		if lv.busy {
			lv.life.stopped = horizon
		}
		lives = append(lives, lv.life)
	}
	return lives
}

// seriesEvent changes the billed, ready and in-flight counts at an instant.
type seriesEvent struct {
	at                     float64
	alive, ready, inFlight int
}

// lifeSeries samples the bound's pods (billed: starting, serving or kept
// idle; ready: past start-up) and tasks in service every step seconds, and
// returns the series, the most pods billed at once and the number of pod
// creations and stops.
func lifeSeries(lives []podLife, changes []slotChange, horizon, step float64) ([]Point, int, int) {
	evs := make([]seriesEvent, 0, 3*len(lives)+len(changes))
	for _, l := range lives {
		evs = append(evs, seriesEvent{at: l.created, alive: 1}, seriesEvent{at: l.ready, ready: 1}, seriesEvent{at: l.stopped, alive: -1, ready: -1})
	}
	for _, ch := range changes {
		if ch.at <= horizon {
			evs = append(evs, seriesEvent{at: ch.at, inFlight: ch.delta})
		}
	}
	slices.SortStableFunc(evs, func(a, b seriesEvent) int {
		if c := cmpFloat(a.at, b.at); c != 0 {
			return c
		}
		return a.alive - b.alive // stops before starts: no phantom peak
	})
	var series []Point
	var cur Point
	maxPods, events := 0, 0
	next := 0.0
	for _, e := range evs {
		for ; next <= e.at && next <= horizon; next += step {
			series = append(series, Point{T: next, Pods: cur.Pods, Replicas: cur.Pods, Ready: cur.Ready, InFlight: cur.InFlight})
		}
		if e.alive != 0 {
			events++
		}
		cur.Pods += e.alive
		cur.Ready += e.ready
		cur.InFlight += e.inFlight
		maxPods = max(maxPods, cur.Pods)
	}
	for ; next <= horizon; next += step {
		series = append(series, Point{T: next, Pods: cur.Pods, Replicas: cur.Pods, Ready: cur.Ready, InFlight: cur.InFlight})
	}
	return series, maxPods, events
}
