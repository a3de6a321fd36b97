package qworker

import (
	"fmt"
	"math"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/policy"
	"github.com/swell-autoscaler/swell/pkg/policy/waittime"
	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/stats"
)

// The wait-time target (spec.scaleConfig.targetWaitSeconds) replaces
// backlog × scalingFactor with pkg/policy/waittime's model. Its inputs:
//   - the queue's backlog, from the source, each measurement;
//   - the tasks the workers finished and the time they spent on them, from
//     the swell.dev/worker-stats annotation Swell's SDKs keep on their pods
//     (pkg/source/stats), read from the pod cache: no request of its own;
//   - the pool's pod start-up time, created → Ready, of its recent pods.
//
// The estimator turns backlog change plus completions into an arrival rate
// and busy time per completion into a service time. Until both are known
// (a new pool, a restarted controller, workers without Swell's SDK) the
// pool never shrinks and grows only as scalingFactor says; min/max,
// activation, fallback and behavior apply afterwards, as with the ratio.
//
// The sizing itself (estimator feeding, idle rule, start-up median, the
// hold while the model is unknown) is pkg/policy's WaitMemory.Size, the
// code the simulator's swell-wait policy runs; this file reads the pods
// and writes the status.

// publishChange is the relative change of a model figure that rewrites
// status.waitModel (and the decision's reason); smaller moves are noise.
const publishChange = 0.1

// workerReading is what the pool's pods say about its workers this pass.
type workerReading struct {
	// Reports are the workers' counters by pod UID.
	Reports map[string]stats.Report
	// Pods counts the pool's pods that are running or starting.
	Pods int
	// Startups are created → Ready durations of ready pods, newest first.
	Startups []time.Duration
}

// readWorkers reads the stats annotations and start-up times of a pool's
// pods. A malformed annotation is skipped: it is no report.
func readWorkers(pods []corev1.Pod) workerReading {
	r := workerReading{Reports: map[string]stats.Report{}}
	type started struct {
		at time.Time
		d  time.Duration
	}
	var ups []started
	for i := range pods {
		pod := &pods[i]
		if podFinished(pod) {
			continue
		}
		r.Pods++
		if v, ok := pod.Annotations[stats.Annotation]; ok {
			if rep, err := stats.Decode(v); err == nil {
				r.Reports[string(pod.UID)] = rep
			}
		}
		if d, ok := startupOf(pod); ok {
			ups = append(ups, started{pod.CreationTimestamp.Time, d})
		}
	}
	slices.SortFunc(ups, func(a, b started) int { return b.at.Compare(a.at) })
	for _, u := range ups {
		r.Startups = append(r.Startups, u.d)
	}
	return r
}

// startupOf is how long pod took from creation to Ready, when it is ready.
// Both timestamps have second resolution, so a pod ready within its first
// second counts as one second: a measured start-up is never 0, which the
// model reads as "not measured yet".
func startupOf(pod *corev1.Pod) (time.Duration, bool) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && !pod.CreationTimestamp.IsZero() {
			d := c.LastTransitionTime.Sub(pod.CreationTimestamp.Time)
			return max(d, time.Second), d >= 0
		}
	}
	return 0, false
}

// waitState is what the wait-time target remembers about one QWorker.
type waitState struct {
	// mem is the sizing's memory, shared with the simulator (pkg/policy).
	mem      policy.WaitMemory
	tracker  stats.Tracker
	reported bool
	reading  workerReading
	pool     stats.Pool
	// published is status.waitModel; publishedRaw is the pool size the
	// published reason names.
	published    *qv1.WaitModel
	publishedRaw int32
	reason       string
}

// observeWorkers takes this pass's reading of the pool's pods; decide uses
// it when the QWorker has a wait target.
func (st *workerState) observeWorkers(pods []corev1.Pod) {
	st.wait.reading = readWorkers(pods)
}

// waitOutcome is the wait target's part of a decision.
type waitOutcome struct {
	// Raw is the pool size before the fallback guard and behavior.
	Raw int32
	// Reason explains Raw; Model is status.waitModel (nil while unknown).
	Reason string
	Model  *qv1.WaitModel
}

// waitTarget sizes the pool from the wait target when spec has one (ok
// false otherwise, or when the measurement failed: the fallback guard then
// decides). ratio is what scalingFactor asks for, which grows a pool whose
// model is not known yet; active is the pool's running workers.
func (st *workerState) waitTarget(now time.Time, spec workerSpec, active int32, sample source.Sample, measureErr error, ratio int32) (waitOutcome, bool) {
	if spec.WaitTarget == nil || measureErr != nil {
		return waitOutcome{}, false
	}
	w := &st.wait
	r := w.workers()
	r.Queue = policy.QueueReading{Ready: sample.Ready, InFlight: sample.InFlight, Backlog: sample.Backlog}
	r.OldestAge, r.Active = sample.OldestAge, active
	sized := w.mem.Size(now, qworkerPolicy(spec), *spec.WaitTarget, spec.PollingInterval, st.desired, r)
	s := spec.Sizing
	switch sized.State {
	case policy.WaitIdle:
		return waitOutcome{Raw: sized.Raw, Model: w.published,
			Reason: fmt.Sprintf("wait target: backlog %d at or below activation threshold %d and no task finished for %v: minReplicas %d",
				sized.Queued+max(sized.InFlight, 0), s.ActivationThreshold, sized.IdleAfter, s.MinReplicas)}, true
	case policy.WaitUnknown:
		return waitOutcome{Raw: sized.Raw, Model: w.published,
			Reason: fmt.Sprintf("wait target: %s; holding %d, growing by scalingFactor until the workers report (swell.dev/worker-stats)", w.unknownWhy(sized.Estimate), max(st.desired, ratio))}, true
	}
	w.publish(spec, sized.Inputs, sized.Result, sized.Raw, int32(sized.Inputs.Concurrency))
	return waitOutcome{Raw: sized.Raw, Model: w.published, Reason: w.reason}, true
}

// workers folds this pass's pod reading into the pool's counters: the
// sizing's inputs from the workers' reports and the pods' start-ups.
func (w *waitState) workers() policy.WaitReading {
	r := w.reading
	w.reading = workerReading{}
	w.pool = w.tracker.Observe(r.Reports)
	if len(r.Reports) > 0 {
		w.reported = true
	}
	// Completions are known once a worker reported, or while no worker
	// runs (none completes anything); a pool of workers that never report
	// (no Swell SDK) leaves the model unknown.
	known := w.reported || r.Pods == 0
	return policy.WaitReading{
		Completed: w.pool.Tasks, BusySeconds: w.pool.BusySeconds, HasCompleted: known,
		Concurrency: w.pool.Concurrency, Startups: r.Startups,
	}
}

// unknownWhy says which model input is missing.
func (w *waitState) unknownWhy(est waittime.Estimate) string {
	switch {
	case !w.reported:
		return "no worker has reported its task stats yet"
	case math.IsNaN(est.ArrivalRate):
		return "arrival rate not measured yet"
	default:
		return "service time not measured yet (no task finished recently)"
	}
}

// publish updates status.waitModel and the reason when a figure moved by
// more than publishChange or the model's replica count changed.
func (w *waitState) publish(spec workerSpec, in waittime.Inputs, res waittime.Result, raw, conc int32) {
	m := &qv1.WaitModel{
		ArrivalRate:        round3(in.ArrivalRate),
		ServiceTimeSeconds: round3(in.ServiceTime.Seconds()),
		Concurrency:        conc,
		StartupSeconds:     round3(in.StartupTime.Seconds()),
		Replicas:           int32(min(res.Replicas, math.MaxInt32)),
	}
	if !res.Unbounded {
		p := round3(res.PredictedWait.Seconds())
		m.PredictedWaitSeconds = &p
	}
	if w.published != nil && w.publishedRaw == raw && !modelMoved(w.published, m, spec.WaitTarget.Wait) {
		return
	}
	w.published, w.publishedRaw = m, raw
	t := spec.WaitTarget
	pct := t.Percentile
	if pct == 0 {
		pct = waittime.DefaultPercentile
	}
	predicted := "unbounded (the pool cannot keep up)"
	if m.PredictedWaitSeconds != nil {
		predicted = fmt.Sprintf("%gs", *m.PredictedWaitSeconds)
	}
	w.reason = fmt.Sprintf("wait target p%g ≤ %gs: arrivals %g/s × service %gs (%d per worker), start-up %gs: %d slots steady + %d to drain the backlog → %d workers → %d (min %d, max %d); predicted p%g wait %s",
		math.Round(pct*1000)/10, t.Wait.Seconds(), m.ArrivalRate, m.ServiceTimeSeconds, conc, m.StartupSeconds,
		res.SteadySlots, res.DrainSlots, m.Replicas, raw, spec.Sizing.MinReplicas, spec.Sizing.MaxReplicas, math.Round(pct*1000)/10, predicted)
}

// modelMoved reports whether b differs from a by more than noise: a
// measured figure by more than publishChange of itself, the predicted wait
// by more than publishChange of the target (near the pool's capacity the
// prediction swings with every small change of the rate).
func modelMoved(a, b *qv1.WaitModel, target time.Duration) bool {
	if a.Replicas != b.Replicas || a.Concurrency != b.Concurrency || (a.PredictedWaitSeconds == nil) != (b.PredictedWaitSeconds == nil) {
		return true
	}
	if a.PredictedWaitSeconds != nil && math.Abs(*a.PredictedWaitSeconds-*b.PredictedWaitSeconds) > publishChange*target.Seconds() {
		return true
	}
	return moved(a.ArrivalRate, b.ArrivalRate) || moved(a.ServiceTimeSeconds, b.ServiceTimeSeconds) || moved(a.StartupSeconds, b.StartupSeconds)
}

// moved: a relative change above publishChange, ignoring changes below a
// hundredth (a rate of 0.001/s moving to 0.002/s is not news).
func moved(a, b float64) bool {
	d := math.Abs(a - b)
	return d > 0.01 && d > publishChange*math.Max(math.Abs(a), math.Abs(b))
}

// round3 rounds x to three significant digits (0 for non-finite x).
func round3(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) || x == 0 {
		return 0
	}
	scale := math.Pow(10, 2-math.Floor(math.Log10(math.Abs(x))))
	return math.Round(x*scale) / scale
}
