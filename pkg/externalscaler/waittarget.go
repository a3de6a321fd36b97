package externalscaler

import (
	"fmt"
	"math"
	"time"

	"github.com/swell-autoscaler/swell/pkg/policy/waittime"
)

// Wait-time target on the external scaler (metadata "targetWaitSeconds").
//
// KEDA sets replicas = ceil(metric ÷ target), so the wait metric reports
// the replica count pkg/policy/waittime computes, with a target of 1. Its
// inputs are what the scaler can see: the arrival rate from the growth of
// the topics' log-end offsets (Kafka; other sources have no arrival
// counter the scaler can read without the workers' reports, which only the
// QWorker controller reads), the lag, and from metadata the mean service
// time per record ("serviceTimeSeconds", required: the scaler cannot see
// the workers), the records one replica processes at once ("concurrency",
// default 1) and the replicas' start-up time ("startupSeconds", default 0).
// The scaler does not know the current replica count, so the backlog is
// drained by new replicas alone and the scale-down band is left to the
// HPA's own scale-down stabilisation (300 s by default).

// Reading fields of the wait target.
const (
	fieldArrivalRate  = "arrivalRate"
	fieldWaitReplicas = "waitReplicas"
)

// waitParams is a ScaledObject's wait target.
type waitParams struct {
	Target      waittime.Target
	ServiceTime time.Duration
	Concurrency int
	Startup     time.Duration
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

// waitReplicas is the replica count for the wait target from a reading:
// an error (Unavailable) while the arrival rate is not measured yet, so
// KEDA and the HPA hold rather than act on a guess.
func (w *waitParams) replicas(r Reading, backlogField string) (float64, error) {
	rate, ok := r.Values[fieldArrivalRate]
	if !ok || math.IsNaN(rate) {
		return 0, fmt.Errorf("%w: arrival rate not measured yet (needs two polls)", ErrUnavailable)
	}
	res := waittime.Replicas(waittime.Inputs{
		ArrivalRate: rate, ServiceTime: w.ServiceTime, Concurrency: w.Concurrency,
		Backlog: int64(math.Max(r.Values[backlogField], 0)), StartupTime: w.Startup,
	}, w.Target)
	if !res.Known {
		return 0, fmt.Errorf("%w: %s", ErrUnavailable, res.Reason)
	}
	return float64(res.Replicas), nil
}

// withWait adds the wait metric's value to a reading of a wait-target
// spec; other specs' readings are returned as they are.
func (s *Spec) withWait(r Reading) (Reading, error) {
	if s.Wait == nil {
		return r, nil
	}
	n, err := s.Wait.replicas(r, fieldLag)
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
