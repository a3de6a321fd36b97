package podautoscaler

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/swell-autoscaler/swell/pkg/cpa"
	"github.com/swell-autoscaler/swell/pkg/source"
)

// Limits on what the status keeps of the metric answers.
const (
	maxInputs     = 20
	maxInputChars = 128
)

// result is one pass: what it saw and decided, or the stage that failed.
type result struct {
	Now        time.Time
	Current    int32
	HaveTarget bool
	Inputs     []string
	Evaluation int32
	Desired    int32
	Reason     string
	Scaled     bool
	Disabled   bool
	// FailReason is the cpa event reason of the failed stage; Err its error.
	FailReason string
	Err        error
	// Source is the queue source the pass asked (spec.metric.source), for
	// the push subscription; nil when it asked none.
	Source source.Source
}

func (res *result) fail(reason string, err error) *result {
	res.FailReason, res.Err = reason, err
	return res
}

// pass runs one CPA pass for one PodAutoscaler: read the target through its
// scale subresource, gather metrics, evaluate, decide, scale. Any failure
// returns before the scale, so a failed pass never changes the count.
func (r *Reconciler) pass(ctx context.Context, spec paSpec, st *objState) *result {
	res := &result{Now: r.Clock.Now()}
	target := r.Clients.Target(spec.Ref, spec.Namespace)
	ts, err := target.Get(ctx)
	if err != nil {
		return res.fail(cpa.ReasonFailedGetScale, err)
	}
	res.Current, res.HaveTarget = ts.Replicas, true
	if ts.Replicas == 0 && spec.Min != 0 {
		res.Disabled, res.Reason = true, "target is at 0 and minReplicas is not 0: autoscaling disabled (CPA's rule)"
		return res
	}
	var metrics []cpa.ResourceMetric
	waitWhy := ""
	switch {
	case spec.Source != nil && spec.Wait != nil:
		metrics, res.Source, waitWhy, err = r.measureWait(ctx, spec, target, ts, st, res.Now)
	case spec.Source != nil:
		metrics, res.Source, err = r.measure(ctx, spec.Namespace, *spec.Source, ts.Object.GetName())
	default:
		metrics, err = r.gather(ctx, spec, target, ts)
	}
	if err != nil {
		return res.fail(cpa.ReasonFailedGetMetrics, err)
	}
	res.Inputs = inputs(metrics)
	if res.Evaluation, err = r.evaluate(ctx, spec, ts, metrics); err != nil {
		return res.fail(cpa.ReasonFailedEvaluate, err)
	}
	res.Desired, res.Reason = st.decide(res.Now, spec, ts.Replicas, res.Evaluation)
	if waitWhy != "" {
		res.Reason = waitWhy + "; " + res.Reason
	}
	if res.Desired == ts.Replicas {
		return res
	}
	if err := target.Scale(ctx, ts, res.Desired); err != nil {
		return res.fail(cpa.ReasonFailedRescale, err)
	}
	st.scaled(res.Now, ts.Replicas, res.Desired)
	res.Scaled = true
	return res
}

// gather runs the metric method per pod or per resource with the
// Kubernetes metrics as CPA passes them (their failure is not fatal); a
// queue source is measured by measure instead.
func (r *Reconciler) gather(ctx context.Context, spec paSpec, target cpa.Target, ts *cpa.TargetState) ([]cpa.ResourceMetric, error) {
	var pods []corev1.Pod
	if spec.RunMode == cpa.PerPod || len(spec.KubeSpecs) > 0 {
		p, err := target.Pods(ctx, ts)
		if err != nil {
			return nil, err
		}
		pods = p
	}
	km := r.kubernetesMetrics(ctx, spec, ts, pods)
	if spec.RunMode == cpa.PerResource {
		out, err := r.call(ctx, "metric", spec.Metric, cpa.MetricInfo{Resource: r.targetResource(ts.Object), RunType: cpa.RunTypeScaler, KubernetesMetrics: km})
		if err != nil {
			return nil, err
		}
		return []cpa.ResourceMetric{{Resource: ts.Object.GetName(), Value: out}}, nil
	}
	metrics := make([]cpa.ResourceMetric, 0, len(pods))
	for i := range pods {
		out, err := r.call(ctx, "metric", spec.Metric, cpa.MetricInfo{Resource: r.podResource(&pods[i]), RunType: cpa.RunTypeScaler, KubernetesMetrics: km})
		if err != nil {
			return nil, fmt.Errorf("pod %s: %w", pods[i].Name, err)
		}
		metrics = append(metrics, cpa.ResourceMetric{Resource: pods[i].Name, Value: out})
	}
	return metrics, nil
}

// kubernetesMetrics gathers the specs; like CPA without
// requireKubernetesMetrics, a failure leaves the methods without them.
func (r *Reconciler) kubernetesMetrics(ctx context.Context, spec paSpec, ts *cpa.TargetState, pods []corev1.Pod) []cpa.KubernetesMetric {
	if len(spec.KubeSpecs) == 0 || r.KubeMetrics == nil {
		return nil
	}
	scope := cpa.Scope{Namespace: spec.Namespace, Selector: ts.Selector, Pods: pods, CurrentReplicas: ts.Replicas}
	km, err := r.KubeMetrics.Gather(ctx, r.Clock.Now(), spec.KubeSpecs, scope)
	if err != nil {
		r.log(ctx).Info("Kubernetes metrics unavailable; continuing without them", "err", err.Error())
		return nil
	}
	return km
}

// evaluate asks the http evaluator (parsed strictly by cpa) or computes the
// built-in expression over the sum of the metric answers.
func (r *Reconciler) evaluate(ctx context.Context, spec paSpec, ts *cpa.TargetState, metrics []cpa.ResourceMetric) (int32, error) {
	if spec.Expr == nil {
		out, err := r.call(ctx, "evaluate", spec.Evaluate, cpa.EvaluateInfo{Metrics: metrics, Resource: r.targetResource(ts.Object), RunType: cpa.RunTypeScaler})
		if err != nil {
			return 0, err
		}
		return parseEvaluation(out)
	}
	sum, err := sumMetrics(metrics)
	if err != nil {
		return 0, err
	}
	return spec.Expr.Replicas(Vars{Value: sum, Replicas: float64(ts.Replicas)})
}

// sumMetrics adds the answers; each must be one number, since the
// expression has no way to pick a field out of anything richer. An answer
// that is not a number is described by its size, never quoted: it is a
// response body, and the error lands in the condition and events.
func sumMetrics(metrics []cpa.ResourceMetric) (float64, error) {
	var sum float64
	for _, m := range metrics {
		f, err := strconv.ParseFloat(strings.TrimSpace(m.Value), 64)
		if err != nil {
			return 0, fmt.Errorf("metric answer for %s (%d bytes) is not a number; the expression evaluator needs one (the answer is not shown)", m.Resource, len(m.Value))
		}
		sum += f
	}
	return sum, nil
}

// call marshals input and runs the method.
func (r *Reconciler) call(ctx context.Context, name string, m *cpa.Method, input any) (string, error) {
	b, err := json.Marshal(input)
	if err != nil {
		return "", fmt.Errorf("%s: encode input: %w", name, err)
	}
	out, err := r.Runner.Run(ctx, m, b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// inputs summarises the metric answers for the status: a number as it
// is, anything else by its size only, since the status must not carry what
// a URL answered (the object's readers are not the URL's).
func inputs(metrics []cpa.ResourceMetric) []string {
	out := make([]string, 0, min(len(metrics), maxInputs))
	for i, m := range metrics {
		if i == maxInputs {
			out = append(out, fmt.Sprintf("... %d more", len(metrics)-maxInputs))
			break
		}
		out = append(out, truncate(m.Resource+"="+shown(m.Value), maxInputChars))
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// shown is an answer as the status shows it: a number, or its size.
func shown(v string) string {
	t := strings.TrimSpace(v)
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		return t
	}
	return fmt.Sprintf("(answer of %d bytes, not a number, not shown)", len(v))
}
