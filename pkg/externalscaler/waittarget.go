package externalscaler

import (
	"fmt"
	"math"
	"time"

	"github.com/swell-autoscaler/swell/pkg/policy/waittime"
	"github.com/swell-autoscaler/swell/pkg/source"
)

// Wait-time target on the external scaler (metadata "targetWaitSeconds").
//
// KEDA sets replicas = ceil(metric ÷ target), so the wait metric reports
// the replica count pkg/policy/waittime computes, with a target of 1. Its
// inputs are what the scaler can see, and from metadata the mean service
// time per task ("serviceTimeSeconds", required: the scaler cannot see the
// workers), the tasks one replica serves at once ("concurrency", default
// 1) and the replicas' start-up time ("startupSeconds", default 0).
//
// The arrival rate: on Kafka, the growth of the topics' log-end offsets;
// on Redis, RabbitMQ and NATS, the smoothed growth of the tasks present
// (waiting + in flight) plus the tasks the busy ones finish, in-flight ÷
// serviceTimeSeconds (Little's law: each busy slot finishes one task per
// service time). Where the broker does not count in-flight tasks (a Redis
// list, RabbitMQ without managementURL) only the growth is seen, which
// reads low while the pool keeps up; the backlog part still starts the
// waiting tasks within the target. The oldest waiting task's age, where
// the broker has it (see source.Sample.OldestAge; on Kafka the timestamp of
// the oldest record a group has not consumed, read by kafka.OldestRecord as
// the QWorker's Kafka source reads it), shortens the backlog's horizon once
// it is older than the target.
//
// The scaler does not know the current replica count, so the backlog is
// drained by new replicas alone and the scale-down band is left to the
// HPA's own scale-down stabilisation (300 s by default).

// Reading fields of the wait target.
const (
	fieldArrivalRate  = "arrivalRate"
	fieldWaitReplicas = "waitReplicas"
	// fieldGrowth is the smoothed growth of the tasks present per second
	// (queue sources); with fieldBusy it makes the arrival rate.
	fieldGrowth = "presentGrowth"
	// fieldBusy is the smoothed count of tasks in flight.
	fieldBusy = "busyMean"
	// fieldOldestAge is the oldest waiting task's age in seconds (absent
	// when unknown).
	fieldOldestAge = "oldestAgeSeconds"
)

// waitParams is a ScaledObject's wait target.
type waitParams struct {
	Target      waittime.Target
	ServiceTime time.Duration
	Concurrency int
	Startup     time.Duration
	// waiting is the reading field of the tasks waiting to start
	// (Kafka's lag, a queue's ready count); active decides activity.
	waiting, active string
}

// parseWait reads the wait-target keys; nil when targetWaitSeconds is unset.
func parseWait(f *fields) *waitParams {
	if _, _, ok := f.lookup("targetWaitSeconds"); !ok {
		for _, k := range []string{"targetPercentile", "serviceTimeSeconds", "startupSeconds"} {
			if _, _, set := f.lookup(k); set {
				f.fail("metadata %q applies only with \"targetWaitSeconds\"", k)
			}
		}
		return nil
	}
	w := &waitParams{
		Target: waittime.Target{
			Wait:       seconds(f.positive(0, "targetWaitSeconds")),
			Percentile: f.positive(waittime.DefaultPercentile, "targetPercentile"),
		},
		ServiceTime: seconds(f.positive(0, "serviceTimeSeconds")),
		Concurrency: f.integer(1, "concurrency"),
		Startup:     seconds(f.nonNegative(0, "startupSeconds")),
	}
	if _, _, ok := f.lookup("serviceTimeSeconds"); !ok {
		f.fail("metadata \"serviceTimeSeconds\" is required with \"targetWaitSeconds\": the mean time one replica takes per record (the scaler cannot see the workers)")
	}
	if p := w.Target.Percentile; p < 0.5 || p > 0.999 {
		f.fail("metadata \"targetPercentile\": %v must be from 0.5 to 0.999 (0.95 is p95)", p)
	}
	if w.Concurrency < 1 {
		f.fail("metadata \"concurrency\": %d must be at least 1", w.Concurrency)
	}
	return w
}

func seconds(s float64) time.Duration {
	if !(s > 0) || math.IsInf(s, 0) {
		return 0
	}
	return time.Duration(min(s, 1e9) * float64(time.Second))
}

// replicas is the replica count for the wait target from a reading: an
// error (Unavailable) while the arrival rate is not measured yet, so KEDA
// and the HPA hold rather than act on a guess.
func (w *waitParams) replicas(r Reading) (float64, error) {
	rate, ok := w.arrivalRate(r)
	if !ok {
		return 0, fmt.Errorf("%w: arrival rate not measured yet (needs two polls)", ErrUnavailable)
	}
	res := waittime.Replicas(waittime.Inputs{
		ArrivalRate: rate, ServiceTime: w.ServiceTime, Concurrency: w.Concurrency,
		Backlog:   int64(math.Max(r.Values[w.waitingField()], 0)),
		InFlight:  int64(math.Max(r.Values["inFlight"], 0)),
		OldestAge: seconds(r.Values[fieldOldestAge]), StartupTime: w.Startup,
	}, w.Target)
	if !res.Known {
		return 0, fmt.Errorf("%w: %s", ErrUnavailable, res.Reason)
	}
	return float64(res.Replicas), nil
}

// arrivalRate is the broker's own arrival rate (Kafka), else the growth of
// the tasks present plus the busy tasks' completions (see above).
func (w *waitParams) arrivalRate(r Reading) (float64, bool) {
	if rate, ok := r.Values[fieldArrivalRate]; ok {
		return rate, !math.IsNaN(rate)
	}
	growth, ok := r.Values[fieldGrowth]
	if !ok || math.IsNaN(growth) {
		return 0, false
	}
	done := math.Max(r.Values[fieldBusy], 0) / w.ServiceTime.Seconds()
	return math.Max(growth+done, 0), true
}

func (w *waitParams) waitingField() string {
	if w.waiting == "" {
		return fieldLag
	}
	return w.waiting
}

func (w *waitParams) activeField() string {
	if w.active == "" {
		return fieldLag
	}
	return w.active
}

// withWait adds the wait metric's value to a reading of a wait-target
// spec; other specs' readings are returned as they are.
func (s *Spec) withWait(r Reading) (Reading, error) {
	if s.Wait == nil {
		return r, nil
	}
	n, err := s.Wait.replicas(r)
	if err != nil {
		return r, err
	}
	vals := make(map[string]float64, len(r.Values)+1)
	for k, v := range r.Values {
		vals[k] = v
	}
	vals[fieldWaitReplicas] = n
	return Reading{Values: vals, At: r.At}, nil
}

// queueWait makes the wait metric a queue source's only metric when its
// metadata sets targetWaitSeconds.
func queueWait(f *fields, spec *Spec, name string) {
	spec.Wait = parseWait(f)
	if spec.Wait == nil {
		return
	}
	spec.Wait.waiting, spec.Wait.active = "ready", "backlog"
	spec.Metrics = []MetricDef{{Name: metricName(name), Field: fieldWaitReplicas, Target: 1}}
}

// growthHalfLife smooths the queue sources' growth and busy counts like
// the QWorker's estimator smooths its rates.
const growthHalfLife = waittime.DefaultHalfLife

// growth follows the tasks present in a queue between polls.
type growth struct {
	prevAt        time.Time
	prev          float64
	rate, busy    float64
	havePrev, has bool
}

// add folds one sample in and writes the wait target's fields into vals.
func (g *growth) add(now time.Time, s source.Sample, vals map[string]float64) {
	present := float64(max(s.Backlog, 0))
	inFlight := float64(max(s.InFlight, 0))
	if s.OldestAge > 0 {
		vals[fieldOldestAge] = s.OldestAge.Seconds()
	}
	if !g.havePrev {
		g.prev, g.prevAt, g.havePrev, g.busy = present, now, true, inFlight
		return
	}
	dt := now.Sub(g.prevAt).Seconds()
	if !(dt > 0) {
		if g.has {
			vals[fieldGrowth], vals[fieldBusy] = g.rate, g.busy
		}
		return
	}
	alpha := 1 - math.Exp2(-dt/growthHalfLife.Seconds())
	rate := (present - g.prev) / dt
	if !g.has {
		g.rate, g.has = rate, true
	} else {
		g.rate += alpha * (rate - g.rate)
	}
	g.busy += alpha * (inFlight - g.busy)
	g.prev, g.prevAt = present, now
	vals[fieldGrowth], vals[fieldBusy] = g.rate, g.busy
}
