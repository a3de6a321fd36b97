package sim

import (
	"math"
	"time"
)

// podState is a worker pod's life stage.
type podState uint8

const (
	podStarting podState = iota // created, not yet ready
	podReady                    // taking tasks
	podDraining                 // chosen for removal, finishing its tasks
	podGone                     // deleted; no longer billed
)

// pod is one simulated worker pod.
type pod struct {
	state   podState
	created float64
	readyAt float64
	busy    int
	// busyArea integrates busy slots over time up to areaAt; the hpa-cpu
	// policy turns its growth into cpu utilisation.
	busyArea, areaAt float64
	// lastArea/lastAreaAt snapshot busyArea at the previous metric scrape.
	lastArea, lastAreaAt float64
	node                 *node
}

func (p *pod) advanceArea(now float64) {
	p.busyArea += float64(p.busy) * (now - p.areaAt)
	p.areaAt = now
}

// node is a simulated node with room for a fixed number of pods.
type node struct {
	readyAt    float64
	created    float64
	pods       int
	emptySince float64
	warm       bool
	gone       bool
}

// Point is one sample of a run's time series.
type Point struct {
	T        float64 // seconds from start
	Pods     int     // pods alive (billed), draining included
	Replicas int     // the replica count the policy set (starting + ready)
	Ready    int     // pods taking tasks
	Backlog  int     // tasks queued, not started
	InFlight int     // tasks being served
}

// run is the state of one policy over one task list.
type run struct {
	sc     *Scenario
	tasks  []Task
	ctl    controller
	now    float64
	events eventQueue

	queue       []int32 // task indices, FIFO from head
	head        int
	pods        []*pod
	free        []*pod // one entry per free slot of a ready pod (stale entries skipped)
	active      int    // starting + ready: the replica count policies see
	ready       int
	inFlight    int
	nodes       []*node
	concurrency int

	// completed and busySeconds are what the workers report: tasks
	// finished and slot-seconds spent on them (cumulative).
	completed   int64
	busySeconds float64
	// startups are create→ready seconds of pods, in the order they became ready.
	startups []float64

	waits       []float64
	started     int
	podSeconds  float64
	nodeSeconds float64
	maxBacklog  int
	maxPods     int
	scaleEvents int
	podsStarted int
	series      []Point
}

// simEpoch anchors simulated seconds to a time.Time for pkg/policy, which
// takes wall-clock-like instants.
var simEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func (r *run) clock() time.Time {
	return simEpoch.Add(time.Duration(r.now * float64(time.Second)))
}

func newRun(sc *Scenario, tasks []Task, ctl controller) *run {
	r := &run{sc: sc, tasks: tasks, ctl: ctl, concurrency: sc.Workers.Concurrency,
		waits: make([]float64, len(tasks)), queue: make([]int32, 0, 1024)}
	if n := sc.Nodes; n != nil {
		for range n.Warm {
			r.nodes = append(r.nodes, &node{warm: true})
		}
	}
	return r
}

// simulate runs the whole scenario and returns the measurements.
func (r *run) simulate() Result {
	horizon := r.sc.Duration.Seconds()
	if len(r.tasks) > 0 {
		r.events.push(event{at: r.tasks[0].Arrival, kind: evArrival})
	}
	if p := r.ctl.period(); p > 0 {
		r.events.push(event{at: 0, kind: evTick})
	}
	r.events.push(event{at: 0, kind: evSample})
	r.scaleTo(int(r.ctl.initial()))
	next := 0
	for r.events.len() > 0 && r.events.peek() <= horizon {
		e := r.events.pop()
		r.now = e.at
		switch e.kind {
		case evArrival:
			next = r.arrive(next)
		case evPodReady:
			r.podReady(e.pod)
		case evTaskDone:
			r.taskDone(e.pod, e.task)
		case evTick:
			r.scaleTo(int(r.ctl.tick(r)))
			r.events.push(event{at: r.now + r.ctl.period(), kind: evTick})
		case evSample:
			r.sample()
			r.events.push(event{at: r.now + r.sc.SampleEvery.Seconds(), kind: evSample})
		}
	}
	r.now = horizon
	return r.finish()
}

// arrive enqueues every task arriving at the current instant.
func (r *run) arrive(next int) int {
	for next < len(r.tasks) && r.tasks[next].Arrival <= r.now {
		r.queue = append(r.queue, int32(next))
		next++
	}
	if next < len(r.tasks) {
		r.events.push(event{at: r.tasks[next].Arrival, kind: evArrival})
	}
	r.dispatch()
	if n, ok := r.ctl.onArrival(r); ok {
		r.scaleTo(int(n))
		r.dispatch()
	}
	r.maxBacklog = max(r.maxBacklog, r.queued())
	return next
}

func (r *run) queued() int { return len(r.queue) - r.head }

// dispatch hands queued tasks to free slots, most recently freed first, so
// work packs onto warm pods and idle ones can be retired.
func (r *run) dispatch() {
	for r.queued() > 0 && len(r.free) > 0 {
		p := r.free[len(r.free)-1]
		r.free = r.free[:len(r.free)-1]
		if p.state != podReady {
			continue
		}
		task := r.queue[r.head]
		r.head++
		p.advanceArea(r.now)
		p.busy++
		r.inFlight++
		r.started++
		r.waits[task] = r.now - r.tasks[task].Arrival
		r.events.push(event{at: r.now + r.tasks[task].Service, kind: evTaskDone, pod: p, task: task})
	}
	if r.head > 4096 && r.head*2 > len(r.queue) {
		r.queue = append(r.queue[:0], r.queue[r.head:]...)
		r.head = 0
	}
}

func (r *run) podReady(p *pod) {
	if p.state != podStarting {
		return // removed before it became ready
	}
	p.state = podReady
	p.areaAt, p.lastAreaAt = r.now, r.now
	r.startups = append(r.startups, r.now-p.created)
	r.ready++
	for range r.concurrency {
		r.free = append(r.free, p)
	}
	r.dispatch()
}

func (r *run) taskDone(p *pod, task int32) {
	r.completed++
	r.busySeconds += r.tasks[task].Service
	p.advanceArea(r.now)
	p.busy--
	r.inFlight--
	switch p.state {
	case podDraining:
		if p.busy == 0 {
			r.retire(p)
		}
	case podReady:
		r.free = append(r.free, p)
	}
	if n, ok := r.ctl.onCompletion(r); ok {
		r.scaleTo(int(n))
	}
	r.dispatch()
}

// newestStartups is the create→ready times of the newest n pods that
// became ready, newest first.
func (r *run) newestStartups(n int) []time.Duration {
	k := min(n, len(r.startups))
	out := make([]time.Duration, 0, k)
	for i := len(r.startups) - 1; i >= len(r.startups)-k; i-- {
		out = append(out, time.Duration(r.startups[i]*float64(time.Second)))
	}
	return out
}

// scaleTo sets the replica count (starting + ready pods) to n.
func (r *run) scaleTo(n int) {
	if n == r.active || n < 0 {
		return
	}
	r.scaleEvents++
	prev := r.active
	if n > r.active {
		for range n - r.active {
			r.createPod()
		}
	} else {
		r.removePods(r.active - n)
	}
	r.ctl.scaled(r, int32(prev), int32(n))
	r.maxPods = max(r.maxPods, r.alive())
}

func (r *run) alive() int {
	n := 0
	for _, p := range r.pods {
		if p.state != podGone {
			n++
		}
	}
	return n
}

func (r *run) createPod() {
	p := &pod{state: podStarting, created: r.now}
	r.pods = append(r.pods, p)
	r.podsStarted++
	r.active++
	if r.ctl.instantStart() {
		r.podReady(p)
		return
	}
	start := r.now
	if r.sc.Nodes != nil {
		p.node = r.placePod()
		start = math.Max(start, p.node.readyAt)
	}
	p.readyAt = start + r.sc.Workers.StartLatency.Seconds()
	r.events.push(event{at: p.readyAt, kind: evPodReady, pod: p})
}

// placePod finds room on the node that is ready first, or provisions one.
func (r *run) placePod() *node {
	var best *node
	for _, nd := range r.nodes {
		if nd.gone || nd.pods >= r.sc.Nodes.PodsPerNode {
			continue
		}
		if best == nil || nd.readyAt < best.readyAt {
			best = nd
		}
	}
	if best == nil {
		best = &node{created: r.now, readyAt: r.now + r.sc.Nodes.ProvisionLatency.Seconds()}
		r.nodes = append(r.nodes, best)
	}
	best.pods++
	return best
}

// removePods takes k pods out of service the way Swell retires workers:
// pods still starting first, then idle pods, newest first; busy pods last,
// and those drain (finish their tasks) before they go.
func (r *run) removePods(k int) {
	for _, pass := range []func(*pod) bool{
		func(p *pod) bool { return p.state == podStarting },
		func(p *pod) bool { return p.state == podReady && p.busy == 0 },
		func(p *pod) bool { return p.state == podReady },
	} {
		for i := len(r.pods) - 1; i >= 0 && k > 0; i-- {
			p := r.pods[i]
			if !pass(p) {
				continue
			}
			k--
			r.active--
			if p.state == podReady {
				r.ready--
			}
			if p.busy > 0 {
				p.state = podDraining
				continue
			}
			r.retire(p)
		}
	}
}

// retire deletes a pod and bills it.
func (r *run) retire(p *pod) {
	p.state = podGone
	r.podSeconds += r.now - p.created
	if nd := p.node; nd != nil {
		nd.pods--
		if nd.pods == 0 {
			nd.emptySince = r.now
		}
	}
}

// sample records the time series and tidies up: compacts pod and slot
// lists and removes nodes idle past their timeout.
func (r *run) sample() {
	r.series = append(r.series, Point{T: r.now, Pods: r.alive(), Replicas: r.active, Ready: r.ready, Backlog: r.queued(), InFlight: r.inFlight})
	kept := r.pods[:0]
	for _, p := range r.pods {
		if p.state != podGone {
			kept = append(kept, p)
		}
	}
	clear(r.pods[len(kept):])
	r.pods = kept
	free := r.free[:0]
	for _, p := range r.free {
		if p.state == podReady {
			free = append(free, p)
		}
	}
	r.free = free
	r.expireNodes()
}

func (r *run) expireNodes() {
	if r.sc.Nodes == nil {
		return
	}
	timeout := r.sc.Nodes.IdleTimeout.Seconds()
	kept := r.nodes[:0]
	for _, nd := range r.nodes {
		if !nd.warm && nd.pods == 0 && nd.readyAt <= r.now && r.now-nd.emptySince >= timeout {
			r.nodeSeconds += r.now - nd.created
			continue
		}
		kept = append(kept, nd)
	}
	r.nodes = kept
}

func (r *run) finish() Result {
	for _, p := range r.pods {
		if p.state != podGone {
			r.podSeconds += r.now - p.created
		}
	}
	for _, nd := range r.nodes {
		r.nodeSeconds += r.now - nd.created
	}
	// Tasks never started waited at least until the end of the run.
	for i := r.head; i < len(r.queue); i++ {
		t := r.queue[i]
		r.waits[t] = r.now - r.tasks[t].Arrival
	}
	return summarize(r)
}
