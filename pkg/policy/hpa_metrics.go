package policy

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// TargetType says how a metric's current value is compared to its target,
// with the HPA v2 meaning of each.
type TargetType string

const (
	// ValueTarget compares the metric's total value to Target.Milli.
	ValueTarget TargetType = "Value"
	// AverageValueTarget compares the value per pod to Target.Milli.
	AverageValueTarget TargetType = "AverageValue"
	// UtilizationTarget compares usage as a percentage of the pods' requests
	// to Target.Utilization (Resource metrics only).
	UtilizationTarget TargetType = "Utilization"
)

// MetricSourceType is where a metric comes from; it selects which of the
// HPA's replica formulas applies.
type MetricSourceType string

const (
	// ResourceMetric is a per-pod resource usage (cpu, memory) with requests.
	ResourceMetric MetricSourceType = "Resource"
	// PodsMetric is a per-pod custom metric.
	PodsMetric MetricSourceType = "Pods"
	// ObjectMetric is one value describing another object (e.g. a queue).
	ObjectMetric MetricSourceType = "Object"
	// ExternalMetric is one or more values from outside the cluster; they
	// are summed, as upstream does.
	ExternalMetric MetricSourceType = "External"
)

// Target is a metric's goal. Values are milli-units (1 = 0.001), the unit
// upstream computes in, so integer truncation matches the HPA bit for bit.
type Target struct {
	Type TargetType
	// Milli is the Value or AverageValue goal, in milli-units; must be > 0.
	Milli int64
	// Utilization is the goal percentage for UtilizationTarget; must be > 0.
	Utilization int32
}

// PodPhase is the subset of Kubernetes pod phases the HPA distinguishes.
type PodPhase string

const (
	// PodRunning pods contribute metrics.
	PodRunning PodPhase = "Running"
	// PodPending pods are counted as unready.
	PodPending PodPhase = "Pending"
	// PodFailed pods are ignored entirely.
	PodFailed PodPhase = "Failed"
	// PodSucceeded pods are treated like running ones by the grouping, as
	// upstream does (they rarely carry metrics and so count as missing).
	PodSucceeded PodPhase = "Succeeded"
)

// PodMetric is one pod as the HPA sees it for one metric: its state and, if
// the metrics API returned one, its value.
type PodMetric struct {
	Phase PodPhase
	// Deleting marks a pod with a deletion timestamp; it is ignored.
	Deleting bool
	// Unready applies to cpu Resource metrics only: set it with
	// [CPUSampleUnready] so start-up spikes do not drive decisions.
	Unready bool
	// HasMetric is false when the metrics API returned nothing for the pod.
	HasMetric bool
	// Milli is the pod's metric value in milli-units.
	Milli int64
	// RequestMilli is the pod's summed request for the resource (Utilization
	// targets only).
	RequestMilli int64
}

// PodReadiness is what [CPUSampleUnready] needs to know about a pod and its
// latest cpu sample.
type PodReadiness struct {
	// Started is the pod's start time; zero if unknown.
	Started time.Time
	// HasReadyCondition is false when the pod has no Ready condition yet.
	HasReadyCondition bool
	// Ready is the Ready condition's status.
	Ready bool
	// ReadyTransition is when the Ready condition last changed.
	ReadyTransition time.Time
	// SampleTime and SampleWindow describe the metrics-server sample.
	SampleTime   time.Time
	SampleWindow time.Duration
}

// Upstream defaults for the cpu readiness rules (kube-controller-manager
// flags --horizontal-pod-autoscaler-cpu-initialization-period and
// --horizontal-pod-autoscaler-initial-readiness-delay).
const (
	DefaultCPUInitializationPeriod = 5 * time.Minute
	DefaultInitialReadinessDelay   = 30 * time.Second
)

// CPUSampleUnready decides, as the HPA does, whether a pod's cpu sample must
// be set aside: pods still initialising are judged by their readiness and
// whether a full sample window passed since they became ready; older pods
// only if they are unready and have never been ready.
func CPUSampleUnready(p PodReadiness, now time.Time, initPeriod, readinessDelay time.Duration) bool {
	if !p.HasReadyCondition || p.Started.IsZero() {
		return true
	}
	if p.Started.Add(initPeriod).After(now) {
		return !p.Ready || p.SampleTime.Before(p.ReadyTransition.Add(p.SampleWindow))
	}
	return !p.Ready && p.Started.Add(readinessDelay).After(p.ReadyTransition)
}

// Tolerance is the band around a usage ratio of 1 inside which the HPA keeps
// the current count. Upstream's default is 0.1 both ways; Kubernetes 1.33+
// allows a separate value per direction, which this mirrors.
type Tolerance struct {
	Down float64
	Up   float64
}

// DefaultTolerance is kube-controller-manager's default of 10 %.
var DefaultTolerance = Tolerance{Down: 0.1, Up: 0.1}

// within reports whether ratio is close enough to 1 to leave replicas alone.
func (t Tolerance) within(ratio float64) bool {
	return 1.0-t.Down <= ratio && ratio <= 1.0+t.Up
}

// MetricInput is one HPA metric with everything measured for it.
type MetricInput struct {
	Source MetricSourceType
	// CPU marks a cpu Resource metric, the only one with unready handling.
	CPU    bool
	Target Target
	// Pods carries per-pod values for Resource and Pods metrics.
	Pods []PodMetric
	// Milli carries an Object metric's value.
	Milli int64
	// ExternalMilli carries an External metric's values (summed).
	ExternalMilli []int64
	// Err records that fetching the metric failed; the HPA then refuses to
	// scale down on the other metrics.
	Err error
}

// PodCounts is the pod list the HPA sees beside its metrics: total pods
// matched by the selector and how many of them are Running and Ready, which
// Object and External Value targets multiply by.
type PodCounts struct {
	Total int32
	Ready int32
}

// Errors returned by the replica calculation, comparable with errors.Is.
var (
	ErrNoPods          = errors.New("no pods returned by selector while calculating replica count")
	ErrNoReadyMetrics  = errors.New("did not receive metrics for any ready pods")
	ErrMissingRequest  = errors.New("missing request for resource on a pod with a metric")
	ErrInvalidTarget   = errors.New("invalid metric target")
	ErrAllMetricsBroke = errors.New("no metric could be computed")
)

// ReplicasForMetric is the HPA replica calculator for one metric: the count
// it proposes given the current replica count. It follows upstream's
// replica_calculator.go rule for rule (see the package tests).
func ReplicasForMetric(current int32, pods PodCounts, m MetricInput, tol Tolerance) (int32, error) {
	if m.Err != nil {
		return 0, m.Err
	}
	if err := validTarget(m); err != nil {
		return 0, err
	}
	switch m.Source {
	case ResourceMetric, PodsMetric:
		return podMetricReplicas(current, m, tol)
	case ObjectMetric:
		return valueReplicas(current, pods, m.Milli, m.Target, tol)
	case ExternalMetric:
		var sum int64
		for _, v := range m.ExternalMilli {
			sum += v
		}
		return valueReplicas(current, pods, sum, m.Target, tol)
	}
	return 0, fmt.Errorf("metric source %q: %w (want Resource, Pods, Object or External)", m.Source, ErrInvalidTarget)
}

func validTarget(m MetricInput) error {
	switch m.Target.Type {
	case ValueTarget, AverageValueTarget:
		if m.Target.Milli <= 0 {
			return fmt.Errorf("%s target %d milli: %w (must be > 0)", m.Target.Type, m.Target.Milli, ErrInvalidTarget)
		}
		if m.Target.Type == ValueTarget && (m.Source == ResourceMetric || m.Source == PodsMetric) {
			return fmt.Errorf("%s metric with Value target: %w (use AverageValue or Utilization)", m.Source, ErrInvalidTarget)
		}
	case UtilizationTarget:
		if m.Source != ResourceMetric || m.Target.Utilization <= 0 {
			return fmt.Errorf("utilization target %d%% on %s metric: %w (Resource metrics only, > 0)", m.Target.Utilization, m.Source, ErrInvalidTarget)
		}
	default:
		return fmt.Errorf("target type %q: %w (want Value, AverageValue or Utilization)", m.Target.Type, ErrInvalidTarget)
	}
	return nil
}

// podTally is upstream's groupPods result reduced to sums: pods with a
// usable metric, unready pods and pods without a metric. Deleting and failed
// pods are ignored. Sums instead of sets keep a decision allocation-free.
type podTally struct {
	readyCount, unreadyCount, missingCount int
	readyMilli, readyRequest               int64
	unreadyRequest, missingRequest         int64
}

func tallyPods(pods []PodMetric, cpu bool) podTally {
	var t podTally
	for _, p := range pods {
		switch {
		case p.Deleting || p.Phase == PodFailed:
		case p.Phase == PodPending:
			t.unreadyCount++
			t.unreadyRequest += p.RequestMilli
		case !p.HasMetric:
			t.missingCount++
			t.missingRequest += p.RequestMilli
		case cpu && p.Unready:
			t.unreadyCount++
			t.unreadyRequest += p.RequestMilli
		default:
			t.readyCount++
			t.readyMilli += p.Milli
			t.readyRequest += p.RequestMilli
		}
	}
	return t
}

// usageRatio is the ratio of current usage to target for a total over count
// pods, with upstream's integer arithmetic (averages and utilisation
// truncate toward zero).
func usageRatio(total, requests int64, count int, t Target) (float64, error) {
	if t.Type == UtilizationTarget {
		if requests <= 0 {
			return 0, ErrMissingRequest
		}
		util := int32(total * 100 / requests)
		return float64(util) / float64(t.Utilization), nil
	}
	avg := total / int64(count)
	return float64(avg) / float64(t.Milli), nil
}

func podMetricReplicas(current int32, m MetricInput, tol Tolerance) (int32, error) {
	if len(m.Pods) == 0 {
		return 0, ErrNoPods
	}
	resource := m.Source == ResourceMetric
	t := tallyPods(m.Pods, m.CPU && resource)
	if t.readyCount == 0 {
		return 0, ErrNoReadyMetrics
	}
	ratio, err := usageRatio(t.readyMilli, t.readyRequest, t.readyCount, m.Target)
	if err != nil {
		return 0, err
	}
	rebalanceUnready := t.unreadyCount > 0 && ratio > 1.0
	if !rebalanceUnready && t.missingCount == 0 {
		if tol.within(ratio) {
			return current, nil
		}
		return ceilRatio(ratio, t.readyCount), nil
	}
	total, requests, count := t.readyMilli, t.readyRequest, t.readyCount
	if t.missingCount > 0 {
		total, requests, count = addMissing(t, m.Target, ratio, total, requests, count)
	}
	if rebalanceUnready {
		// On a scale-up, unready pods count as using nothing.
		requests += t.unreadyRequest
		count += t.unreadyCount
	}
	newRatio, err := usageRatio(total, requests, count, m.Target)
	if err != nil {
		return 0, err
	}
	if tol.within(newRatio) || (ratio < 1.0 && newRatio > 1.0) || (ratio > 1.0 && newRatio < 1.0) {
		// Too small a change, or the guesses flipped the direction.
		return current, nil
	}
	n := ceilRatio(newRatio, count)
	if (newRatio < 1.0 && n > current) || (newRatio > 1.0 && n < current) {
		return current, nil
	}
	return n, nil
}

// addMissing counts pods without a metric as upstream guesses them: at the
// target (100 % of request) on a scale-down, at zero on a scale-up. With a
// Utilization target a ratio of exactly 1 leaves them out; with value
// targets it counts them at zero: upstream's two calculators differ there.
func addMissing(t podTally, target Target, ratio float64, total, requests int64, count int) (int64, int64, int) {
	switch {
	case ratio < 1.0:
		if target.Type == UtilizationTarget {
			total += t.missingRequest
		} else {
			total += target.Milli * int64(t.missingCount)
		}
	case ratio == 1.0 && target.Type == UtilizationTarget:
		return total, requests, count
	}
	return total, requests + t.missingRequest, count + t.missingCount
}

// ceilRatio is int32(math.Ceil(ratio × n)), saturating.
func ceilRatio(ratio float64, n int) int32 {
	x := math.Ceil(ratio * float64(n))
	if x >= math.MaxInt32 {
		return math.MaxInt32
	}
	if !(x > 0) {
		return 0
	}
	return int32(x)
}

// valueReplicas handles Object and External metrics.
func valueReplicas(current int32, pods PodCounts, usage int64, t Target, tol Tolerance) (int32, error) {
	if t.Type == AverageValueTarget {
		// Per-pod target on a single value: divide by the current count.
		ratio := float64(usage) / (float64(t.Milli) * float64(current))
		if tol.within(ratio) {
			return current, nil
		}
		return ceilRatio(float64(usage)/float64(t.Milli), 1), nil
	}
	ratio := float64(usage) / float64(t.Milli)
	if current == 0 {
		// Scale from (or to) zero on the ratio alone.
		return ceilRatio(ratio, 1), nil
	}
	if tol.within(ratio) {
		return current, nil
	}
	if pods.Total == 0 {
		return 0, ErrNoPods
	}
	return ceilRatio(ratio, int(pods.Ready)), nil
}

// HPARecommendation computes every metric's proposal and returns the largest,
// as the HPA does. When some metrics failed it still scales up on the
// others, but refuses to scale below current: a broken metric must not shrink
// a workload. An error means: keep the current count.
func HPARecommendation(current int32, pods PodCounts, metrics []MetricInput, tol Tolerance) (replicas int32, err error) {
	var best int32
	var invalid int
	var firstErr error
	for _, m := range metrics {
		n, err := ReplicasForMetric(current, pods, m, tol)
		if err != nil {
			invalid++
			if firstErr == nil {
				firstErr = fmt.Errorf("metric %d (%s): %w", invalid, m.Source, err)
			}
			continue
		}
		best = max(best, n)
	}
	if len(metrics) == 0 {
		return 0, fmt.Errorf("no metrics configured: %w", ErrAllMetricsBroke)
	}
	if invalid >= len(metrics) {
		return 0, fmt.Errorf("%w: %w", ErrAllMetricsBroke, firstErr)
	}
	if invalid > 0 && best < current {
		return 0, fmt.Errorf("refusing to scale down with a failed metric: %w", firstErr)
	}
	return best, nil
}
