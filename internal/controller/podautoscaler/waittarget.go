package podautoscaler

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/policy/waittime"
	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/stats"
)

// A queue source with targetWaitSeconds answers the replica count
// pkg/policy/waittime computes instead of the backlog, so "value" as the
// expression scales the target by the model; min/max, CPA's downscale
// stabilisation and behavior apply to it as to any evaluation. Its inputs:
//   - the queue's sample (waiting, in flight, the oldest task's age);
//   - the service time: spec's serviceTimeSeconds, else measured from the
//     swell.dev/worker-stats annotation of the target's pods (Swell's
//     SDKs keep it), which also gives the completions and concurrency;
//   - the completions, where no pod reports them: in flight ÷ service time
//     per second (each busy slot finishes one task per service time), the
//     in-flight count being the broker's, or every worker while tasks
//     wait and the broker counts none in flight (a Redis list, Kafka);
//   - the start-up time of the target's recent pods (created → Ready).
//
// Until the arrival rate is known (the first pass) the answer holds the
// current count, and is 1 when the target is at zero with tasks waiting.

// waitStartupSamples is how many of the newest ready pods the start-up
// time is the median of (as the QWorker).
const waitStartupSamples = 5

// waitSpec is a queue source's wait target, decoded.
type waitSpec struct {
	Target waittime.Target
	// ServiceTime is spec's serviceTimeSeconds; 0 means measured.
	ServiceTime time.Duration
}

// decodeWait reads the queue source's wait keys; nil when none is set.
func decodeWait(q *swellv1.QueueSource) (*waitSpec, error) {
	if q == nil {
		return nil, nil
	}
	if q.TargetWaitSeconds == nil {
		var errs []error
		if q.TargetPercentile != nil {
			errs = append(errs, errors.New("spec.metric.source.targetPercentile applies only with targetWaitSeconds"))
		}
		if q.ServiceTimeSeconds != nil {
			errs = append(errs, errors.New("spec.metric.source.serviceTimeSeconds applies only with targetWaitSeconds"))
		}
		return nil, errors.Join(errs...)
	}
	w := &waitSpec{Target: waittime.Target{Wait: secondsOf(*q.TargetWaitSeconds)}}
	var errs []error
	if w.Target.Wait <= 0 {
		errs = append(errs, fmt.Errorf("spec.metric.source.targetWaitSeconds %v: must be > 0", *q.TargetWaitSeconds))
	}
	if p := q.TargetPercentile; p != nil {
		if !(*p >= 0.5 && *p <= 0.999) {
			errs = append(errs, fmt.Errorf("spec.metric.source.targetPercentile %v: must be from 0.5 to 0.999 (0.95 is p95)", *p))
		}
		w.Target.Percentile = *p
	}
	if s := q.ServiceTimeSeconds; s != nil {
		if w.ServiceTime = secondsOf(*s); w.ServiceTime <= 0 {
			errs = append(errs, fmt.Errorf("spec.metric.source.serviceTimeSeconds %v: must be > 0", *s))
		}
	}
	return w, errors.Join(errs...)
}

// secondsOf converts seconds to a Duration; 0 for non-positive, NaN or
// absurd values (validation reports them).
func secondsOf(s float64) time.Duration {
	if !(s > 0) || s > 1e9 {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}

// waitState is what the wait model remembers about one PodAutoscaler.
type waitState struct {
	est     waittime.Estimator
	tracker stats.Tracker
	// reported: a pod has reported its stats (completions are measured);
	// otherwise they are derived from the in-flight count.
	reported bool
	// done is the derived cumulative completions; prev* the last pass.
	done     float64
	prevBusy float64
	prevAt   time.Time
}

// waitInput is one pass's reading for the model.
type waitInput struct {
	Now      time.Time
	Sample   source.Sample
	Pods     []corev1.Pod
	Current  int32
	Max      int32
	Interval time.Duration
}

// replicas feeds one reading to the estimator and returns the count to
// answer and why.
func (w *waitState) replicas(spec *waitSpec, in waitInput) (int32, string) {
	reports, startup := readPods(in.Pods)
	pool := w.tracker.Observe(reports)
	conc := max(int(pool.Concurrency), 1)
	if len(reports) > 0 && !w.reported {
		w.reported = true
		w.est.Reset() // completions switch from derived to reported
	}
	waiting, inFlight := in.Sample.Ready, max(in.Sample.InFlight, 0)
	if waiting == 0 && inFlight == 0 {
		waiting = in.Sample.Backlog
	}
	waiting = max(waiting, 0)
	svc := spec.ServiceTime
	obs := waittime.Observation{Backlog: waiting, InFlight: inFlight}
	switch {
	case w.reported:
		obs.Completed, obs.HasCompleted = pool.Tasks, true
		obs.BusySeconds, obs.HasBusy = pool.BusySeconds, true
	case svc > 0:
		busy := float64(inFlight)
		if inFlight == 0 && waiting > 0 {
			busy = float64(max(in.Current, 0)) * float64(conc)
		}
		if !w.prevAt.IsZero() {
			if dt := in.Now.Sub(w.prevAt).Seconds(); dt > 0 {
				w.done += (w.prevBusy + busy) / 2 * dt / svc.Seconds()
			}
		}
		w.prevBusy, w.prevAt = busy, in.Now
		obs.Completed, obs.HasCompleted = int64(w.done), true
	}
	w.est.Observe(in.Now, obs)
	est := w.est.Estimate(in.Now)
	if svc <= 0 {
		svc = est.ServiceTime
	}
	res := waittime.Replicas(waittime.Inputs{
		ArrivalRate: est.ArrivalRate, SustainedRate: est.SustainedRate, ServiceTime: svc, Concurrency: conc,
		Backlog: waiting, InFlight: inFlight, OldestAge: in.Sample.OldestAge,
		StartupTime: startup, Current: int(max(in.Current, 0)), MaxReplicas: int(max(in.Max, 0)),
		PollInterval: in.Interval,
	}, spec.Target)
	if !res.Known || math.IsNaN(est.ArrivalRate) {
		hold := max(in.Current, 0)
		if hold == 0 && waiting+inFlight > 0 {
			hold = 1
		}
		return hold, fmt.Sprintf("wait target: %s; answering %d", w.unknownWhy(spec, est, svc), hold)
	}
	return int32(min(res.Replicas, math.MaxInt32)), "wait target: " + res.Reason
}

// unknownWhy names the missing model input.
func (w *waitState) unknownWhy(spec *waitSpec, est waittime.Estimate, svc time.Duration) string {
	switch {
	case spec.ServiceTime <= 0 && !w.reported:
		return "no serviceTimeSeconds and no pod of the target reports swell.dev/worker-stats"
	case math.IsNaN(est.ArrivalRate):
		return "arrival rate not measured yet (needs two passes)"
	case svc <= 0:
		return "service time not measured yet (no task finished recently)"
	}
	return "model inputs unusable"
}

// readPods reads the stats annotations of the running pods and the median
// start-up of the newest ready ones. A malformed annotation is no report.
func readPods(pods []corev1.Pod) (map[string]stats.Report, time.Duration) {
	reports := map[string]stats.Report{}
	type started struct {
		at time.Time
		d  time.Duration
	}
	var ups []started
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if v, ok := p.Annotations[stats.Annotation]; ok {
			if rep, err := stats.Decode(v); err == nil {
				reports[string(p.UID)] = rep
			}
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && !p.CreationTimestamp.IsZero() {
				if d := c.LastTransitionTime.Sub(p.CreationTimestamp.Time); d >= 0 {
					// Second-resolution stamps: never 0, the model's "not measured".
					ups = append(ups, started{p.CreationTimestamp.Time, max(d, time.Second)})
				}
			}
		}
	}
	slices.SortFunc(ups, func(a, b started) int { return b.at.Compare(a.at) })
	n := min(len(ups), waitStartupSamples)
	if n == 0 {
		return reports, 0
	}
	ds := make([]time.Duration, n)
	for i := range n {
		ds[i] = ups[i].d
	}
	slices.Sort(ds)
	return reports, ds[n/2]
}

// formatCount is a replica count as a metric answer.
func formatCount(n int32) string { return strconv.FormatInt(int64(n), 10) }
