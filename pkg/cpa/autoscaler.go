package cpa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// Event reasons Swell records on the target. Every failed pass has one, so
// `kubectl describe` shows why the count held.
const (
	ReasonFailedGetScale            = "FailedGetScale"
	ReasonFailedKubernetesMetrics   = "FailedGetKubernetesMetrics"
	ReasonFailedGetMetrics          = "FailedGetMetrics"
	ReasonFailedEvaluate            = "FailedEvaluate"
	ReasonFailedHook                = "FailedHook"
	ReasonFailedRescale             = "FailedRescale"
	ReasonSuccessfulRescale         = "SuccessfulRescale"
	ReasonAutoscalingDisabledByZero = "AutoscalingDisabled"
)

// MethodRunner calls user logic; *Executor is the real one.
type MethodRunner interface {
	Run(ctx context.Context, m *Method, input []byte) (string, error)
}

// Options wire an Autoscaler. Config, Target and Runner are required.
type Options struct {
	Config *Config
	Target Target
	Runner MethodRunner
	// KubeMetrics gathers kubernetesMetricSpecs; required when specs are set.
	KubeMetrics *KubeMetrics
	// Recorder records events on the target; nil records nothing.
	Recorder record.EventRecorder
	// Registerer receives the Prometheus metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Clock drives the loop and the stabilisation windows; nil is real time.
	Clock  clock.WithTicker
	Logger *slog.Logger
}

// Autoscaler is one CPA: a loop of metric → evaluate → scale for one target,
// plus the REST API that runs the same stages on demand.
type Autoscaler struct {
	cfg      *Config
	target   Target
	runner   MethodRunner
	kube     *KubeMetrics
	recorder record.EventRecorder
	clock    clock.WithTicker
	log      *slog.Logger
	metrics  *promMetrics

	// mu serialises passes: the loop and API requests share the windows.
	mu         sync.Mutex
	stabilizer policy.DownscaleStabilizer
	normalizer *policy.Normalizer
	guard      policy.FallbackGuard

	health health
}

// New validates the options and returns an Autoscaler.
func New(o Options) (*Autoscaler, error) {
	if o.Config == nil || o.Target == nil || o.Runner == nil {
		return nil, errors.New("cpa: Config, Target and Runner are required")
	}
	if len(o.Config.KubernetesMetricSpecs) > 0 && o.KubeMetrics == nil {
		return nil, errors.New("cpa: kubernetesMetricSpecs set but no KubeMetrics gatherer")
	}
	a := &Autoscaler{
		cfg: o.Config, target: o.Target, runner: o.Runner, kube: o.KubeMetrics,
		recorder: o.Recorder, clock: o.Clock, log: o.Logger,
		stabilizer: policy.DownscaleStabilizer{Window: time.Duration(o.Config.DownscaleStabilization) * time.Second},
		guard:      policy.FallbackGuard{Policy: policy.Fallback{FailureThreshold: 1}},
	}
	if a.clock == nil {
		a.clock = clock.RealClock{}
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.recorder == nil {
		a.recorder = &record.FakeRecorder{}
	}
	if o.Config.Behavior != nil {
		b, err := PolicyBehavior(o.Config.Behavior)
		if err != nil {
			return nil, err
		}
		a.normalizer = policy.NewNormalizer(b)
	}
	m, err := newPromMetrics(o.Registerer, o.Config)
	if err != nil {
		return nil, err
	}
	a.metrics = m
	return a, nil
}

// stageError marks which stage of a pass failed, for the event reason.
type stageError struct {
	reason string
	err    error
}

func (e *stageError) Error() string { return e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

func stage(reason string, err error) error {
	if err == nil {
		return nil
	}
	var se *stageError
	if errors.As(err, &se) {
		return err
	}
	return &stageError{reason: reason, err: err}
}

// Tick runs one scaler pass. A failed pass never changes the replica count:
// it is logged, counted, recorded as a Warning event on the target and
// reported by /readyz; the next tick starts afresh.
func (a *Autoscaler) Tick(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	st, err := a.target.Get(ctx)
	if err != nil {
		return a.failed(st, stage(ReasonFailedGetScale, err))
	}
	metrics, err := a.gather(ctx, st, RunTypeScaler)
	if err != nil {
		return a.failed(st, err)
	}
	eval, err := a.evaluate(ctx, st, metrics, RunTypeScaler)
	if err != nil {
		return a.failed(st, err)
	}
	if _, err := a.scale(ctx, st, eval, RunTypeScaler); err != nil {
		return a.failed(st, err)
	}
	a.succeeded(st)
	return nil
}

// failed records a failed pass; the count is held (fallback).
func (a *Autoscaler) failed(st *TargetState, err error) error {
	reason := ReasonFailedGetMetrics
	var se *stageError
	if errors.As(err, &se) {
		reason = se.reason
	}
	current := int32(-1)
	if st != nil {
		current = st.Replicas
	}
	a.guard.Apply(current, current, err)
	a.metrics.failure(reason, a.guard.Failures())
	a.health.set(err)
	a.log.Warn("autoscaler pass failed; replicas held", "reason", reason, "replicas", current, "consecutiveFailures", a.guard.Failures(), "err", err)
	a.recorder.Eventf(a.ref(st), corev1.EventTypeWarning, reason, "%s; replicas held", truncate(err.Error(), 900))
	return err
}

func (a *Autoscaler) succeeded(st *TargetState) {
	a.guard.Apply(st.Replicas, st.Replicas, nil)
	a.metrics.success(a.clock.Now())
	a.health.set(nil)
}

// ref is the event's involved object: the target, with its UID when known.
func (a *Autoscaler) ref(st *TargetState) *corev1.ObjectReference {
	r := &corev1.ObjectReference{
		APIVersion: a.cfg.ScaleTargetRef.APIVersion, Kind: a.cfg.ScaleTargetRef.Kind,
		Name: a.cfg.ScaleTargetRef.Name, Namespace: a.cfg.Namespace,
	}
	if st != nil && st.Object != nil {
		r.UID, r.ResourceVersion = st.Object.GetUID(), st.Object.GetResourceVersion()
	}
	return r
}

// gather runs preMetric, metric (per pod or per resource) and postMetric,
// after the Kubernetes metrics when specs are configured.
func (a *Autoscaler) gather(ctx context.Context, st *TargetState, runType string) ([]ResourceMetric, error) {
	info := MetricInfo{Resource: st.Object.Object, RunType: runType}
	var pods []corev1.Pod
	if a.cfg.RunMode == PerPod || len(a.cfg.KubernetesMetricSpecs) > 0 {
		p, err := a.target.Pods(ctx, st)
		if err != nil {
			return nil, stage(ReasonFailedGetMetrics, err)
		}
		pods = p
	}
	km, err := a.kubernetesMetrics(ctx, st, pods)
	if err != nil {
		return nil, err
	}
	info.KubernetesMetrics = km
	if err := a.hook(ctx, "preMetric", a.cfg.PreMetric, info); err != nil {
		return nil, err
	}
	metrics, err := a.runMetric(ctx, st, pods, info)
	if err != nil {
		return nil, stage(ReasonFailedGetMetrics, err)
	}
	info.Metrics = metrics
	if err := a.hook(ctx, "postMetric", a.cfg.PostMetric, info); err != nil {
		return nil, err
	}
	return metrics, nil
}

// kubernetesMetrics gathers the specs. As in CPA, a failure is fatal only
// with requireKubernetesMetrics; otherwise user logic gets the metrics that
// were read (none, if every spec failed) and the failure is logged and
// counted.
func (a *Autoscaler) kubernetesMetrics(ctx context.Context, st *TargetState, pods []corev1.Pod) ([]KubernetesMetric, error) {
	if len(a.cfg.KubernetesMetricSpecs) == 0 {
		return nil, nil
	}
	scope := Scope{Namespace: a.cfg.Namespace, Selector: st.Selector, Pods: pods, CurrentReplicas: st.Replicas}
	km, err := a.kube.Gather(ctx, a.clock.Now(), a.cfg.KubernetesMetricSpecs, scope)
	if err == nil {
		return km, nil
	}
	if a.cfg.RequireKubernetesMetrics {
		return nil, stage(ReasonFailedKubernetesMetrics, fmt.Errorf("required Kubernetes metrics: %w", err))
	}
	a.metrics.kubeMetricsFailures.Inc()
	a.log.Warn("some Kubernetes metrics unavailable; continuing with the rest (requireKubernetesMetrics is false)",
		"read", len(km), "specs", len(a.cfg.KubernetesMetricSpecs), "err", err)
	return km, nil
}

func (a *Autoscaler) runMetric(ctx context.Context, st *TargetState, pods []corev1.Pod, info MetricInfo) ([]ResourceMetric, error) {
	if a.cfg.RunMode == PerResource {
		out, err := a.call(ctx, "metric", a.cfg.Metric, info)
		if err != nil {
			return nil, err
		}
		return []ResourceMetric{{Resource: st.Object.GetName(), Value: out}}, nil
	}
	metrics := make([]ResourceMetric, 0, len(pods))
	for i := range pods {
		in := MetricInfo{Resource: &pods[i], RunType: info.RunType, KubernetesMetrics: info.KubernetesMetrics}
		out, err := a.call(ctx, "metric", a.cfg.Metric, in)
		if err != nil {
			return nil, fmt.Errorf("pod %s: %w", pods[i].Name, err)
		}
		metrics = append(metrics, ResourceMetric{Resource: pods[i].Name, Value: out})
	}
	return metrics, nil
}

// evaluate runs preEvaluate, evaluate and postEvaluate and parses the
// evaluation strictly.
func (a *Autoscaler) evaluate(ctx context.Context, st *TargetState, metrics []ResourceMetric, runType string) (Evaluation, error) {
	info := EvaluateInfo{Metrics: metrics, Resource: st.Object.Object, RunType: runType}
	if err := a.hook(ctx, "preEvaluate", a.cfg.PreEvaluate, info); err != nil {
		return Evaluation{}, err
	}
	out, err := a.call(ctx, "evaluate", a.cfg.Evaluate, info)
	if err != nil {
		return Evaluation{}, stage(ReasonFailedEvaluate, err)
	}
	eval, err := ParseEvaluation(out)
	if err != nil {
		return Evaluation{}, stage(ReasonFailedEvaluate, err)
	}
	a.metrics.evaluated.Set(float64(eval.TargetReplicas))
	info.Evaluation = &eval
	if err := a.hook(ctx, "postEvaluate", a.cfg.PostEvaluate, info); err != nil {
		return Evaluation{}, err
	}
	return eval, nil
}

// ParseEvaluation reads `{"targetReplicas": N}`. Like CPA, anything after
// the object but white space (a second object, stray text) is an error.
// Unlike CPA, output that is not JSON, lacks targetReplicas, or is negative
// is an error too, so a broken script can never scale a workload to zero.
func ParseEvaluation(out string) (Evaluation, error) {
	var raw struct {
		TargetReplicas *int32 `json:"targetReplicas"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&raw); err != nil {
		return Evaluation{}, fmt.Errorf("evaluation output %q: not a JSON object like {\"targetReplicas\": 3}: %w", truncate(out, 200), err)
	}
	if rest := strings.Trim(out[dec.InputOffset():], " \t\r\n"); rest != "" {
		return Evaluation{}, fmt.Errorf("evaluation output %q: trailing data %q after the JSON object (want exactly one object like {\"targetReplicas\": 3})", truncate(out, 200), truncate(rest, 50))
	}
	if raw.TargetReplicas == nil {
		return Evaluation{}, fmt.Errorf("evaluation output %q: no targetReplicas (want {\"targetReplicas\": N})", truncate(out, 200))
	}
	if *raw.TargetReplicas < 0 {
		return Evaluation{}, fmt.Errorf("evaluation output %q: targetReplicas %d must be >= 0", truncate(out, 200), *raw.TargetReplicas)
	}
	return Evaluation{TargetReplicas: *raw.TargetReplicas}, nil
}

// decide turns the evaluation into the count to apply: clamp to [min,max]
// (CPA), the downscale stabilisation window (CPA), then HPA behaviour when
// configured (Swell).
func (a *Autoscaler) decide(now time.Time, current, wanted int32) int32 {
	lo, hi := a.cfg.MinReplicas, a.cfg.MaxReplicas
	desired := min(max(wanted, lo), hi)
	if a.stabilizer.Window > 0 {
		desired = a.stabilizer.Stabilize(now, desired)
	}
	if a.normalizer != nil {
		desired, _ = a.normalizer.Normalize(now, current, desired, lo, hi)
	}
	return desired
}

// scale applies an evaluation: preScale, the write when the count changes,
// postScale. A target at 0 with minReplicas ≠ 0 has autoscaling disabled
// (CPA's rule): nothing runs and the answer is 0.
func (a *Autoscaler) scale(ctx context.Context, st *TargetState, eval Evaluation, runType string) (Evaluation, error) {
	current := st.Replicas
	a.metrics.current.Set(float64(current))
	if current == 0 && a.cfg.MinReplicas != 0 {
		a.log.Info("autoscaling disabled: target scaled to 0 and minReplicas is not 0", "minReplicas", a.cfg.MinReplicas)
		return Evaluation{TargetReplicas: 0}, nil
	}
	now := a.clock.Now()
	desired := a.decide(now, current, eval.TargetReplicas)
	info := ScaleInfo{
		Evaluation: Evaluation{TargetReplicas: desired}, Resource: st.Object.Object,
		MinReplicas: a.cfg.MinReplicas, MaxReplicas: a.cfg.MaxReplicas, TargetReplicas: eval.TargetReplicas,
		Namespace: a.cfg.Namespace, ScaleTargetRef: a.cfg.ScaleTargetRef, RunType: runType,
	}
	if err := a.hook(ctx, "preScale", a.cfg.PreScale, info); err != nil {
		return Evaluation{}, err
	}
	if desired != current {
		if err := a.target.Scale(ctx, st, desired); err != nil {
			return Evaluation{}, stage(ReasonFailedRescale, err)
		}
		a.rescaled(now, st, current, desired, eval.TargetReplicas)
	}
	a.metrics.desired.Set(float64(desired))
	if err := a.hook(ctx, "postScale", a.cfg.PostScale, info); err != nil {
		return Evaluation{}, err
	}
	return info.Evaluation, nil
}

func (a *Autoscaler) rescaled(now time.Time, st *TargetState, from, to, wanted int32) {
	if a.normalizer != nil {
		a.normalizer.RecordScale(now, from, to)
	}
	st.Replicas = to
	a.metrics.scaled(from, to)
	a.log.Info("rescaled", "from", from, "to", to, "evaluation", wanted)
	a.recorder.Eventf(a.ref(st), corev1.EventTypeNormal, ReasonSuccessfulRescale, "New size: %d (was %d); evaluation wanted %d", to, from, wanted)
}

// hook runs an optional hook; its failure fails the pass like CPA's.
func (a *Autoscaler) hook(ctx context.Context, name string, m *Method, input any) error {
	if m == nil {
		return nil
	}
	if _, err := a.call(ctx, name, m, input); err != nil {
		return stage(ReasonFailedHook, fmt.Errorf("%s hook: %w", name, err))
	}
	return nil
}

// call marshals input, runs the method and times it.
func (a *Autoscaler) call(ctx context.Context, name string, m *Method, input any) (string, error) {
	b, err := json.Marshal(input)
	if err != nil {
		return "", fmt.Errorf("%s: encode input: %w", name, err)
	}
	start := a.clock.Now()
	out, err := a.runner.Run(ctx, m, b)
	a.metrics.methodDuration.WithLabelValues(name).Observe(a.clock.Since(start).Seconds())
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	a.log.Debug("method answered", "stage", name, "output", truncate(out, 500))
	return out, nil
}

// Run ticks until ctx ends: first it waits for the next multiple of
// startTime (ms since the epoch), then, like CPA, runs a pass every
// interval, the first one interval later.
func (a *Autoscaler) Run(ctx context.Context) error {
	delay := alignDelay(a.clock.Now(), a.cfg.StartTime)
	select {
	case <-ctx.Done():
		return nil
	case <-a.clock.After(delay):
	}
	t := a.clock.NewTicker(time.Duration(a.cfg.Interval) * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			_ = a.Tick(ctx) // recorded by Tick
		}
	}
}

// alignDelay is how long until now is a multiple of startMs milliseconds.
func alignDelay(now time.Time, startMs int64) time.Duration {
	if startMs <= 1 {
		return time.Millisecond
	}
	ms := now.UnixMilli()
	return time.Duration(startMs-ms%startMs) * time.Millisecond
}
