package podautoscaler

import (
	"errors"
	"fmt"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/cpa"
	"github.com/swell-autoscaler/swell/pkg/policy"
)

// paSpec is a PodAutoscaler's spec decoded once per reconcile into the
// forms pkg/cpa and pkg/policy take, so the pass itself never re-parses.
type paSpec struct {
	Ref        autoscalingv2.CrossVersionObjectReference
	Namespace  string
	Min, Max   int32
	Interval   time.Duration
	RunMode    string
	Metric     *cpa.Method // nil when Source is set
	Source     *swellv1.QueueSource
	Wait       *waitSpec   // Source's wait target; nil without one
	Evaluate   *cpa.Method // nil when Expr is set
	Expr       *Expr
	Behavior   *policy.Behavior
	Stabilize  time.Duration
	KubeSpecs  []autoscalingv2.MetricSpec
	Generation int64
}

// decodeSpec checks what CEL cannot (the expression grammar, behavior
// policies) and converts the spec. The CRD's defaults are applied again
// here because an object written before a default existed lacks it.
func decodeSpec(pa *swellv1.PodAutoscaler) (paSpec, error) {
	s := pa.Spec
	out := paSpec{
		Ref:       autoscalingv2.CrossVersionObjectReference{APIVersion: s.ScaleTargetRef.APIVersion, Kind: s.ScaleTargetRef.Kind, Name: s.ScaleTargetRef.Name},
		Namespace: pa.Namespace, Min: s.MinReplicas, Max: s.MaxReplicas,
		Interval: time.Duration(s.IntervalSeconds) * time.Second, RunMode: s.RunMode,
		Source: s.Metric.Source, Stabilize: time.Duration(s.DownscaleStabilizationSeconds) * time.Second,
		KubeSpecs: s.KubernetesMetricSpecs, Generation: pa.Generation,
	}
	if out.Interval <= 0 {
		out.Interval = 15 * time.Second
	}
	if out.RunMode == "" {
		out.RunMode = cpa.PerPod
	}
	var errs []error
	if out.Min > out.Max {
		errs = append(errs, fmt.Errorf("spec.minReplicas %d > spec.maxReplicas %d", out.Min, out.Max))
	}
	switch {
	case s.Metric.HTTP != nil && s.Metric.Source != nil:
		errs = append(errs, errors.New("spec.metric: set only one of http and source"))
	case s.Metric.HTTP != nil:
		out.Metric = httpMethod(*s.Metric.HTTP)
	case s.Metric.Source == nil:
		errs = append(errs, errors.New("spec.metric: set one of http and source"))
	}
	switch {
	case s.Evaluate.HTTP != nil && s.Evaluate.Expression != "":
		errs = append(errs, errors.New("spec.evaluate: set only one of http and expression"))
	case s.Evaluate.HTTP != nil:
		out.Evaluate = httpMethod(*s.Evaluate.HTTP)
	default:
		e, err := ParseExpr(s.Evaluate.Expression)
		errs = append(errs, wrap("spec.evaluate.expression", err))
		out.Expr = e
	}
	w, err := decodeWait(s.Metric.Source)
	errs = append(errs, err)
	out.Wait = w
	if s.Behavior != nil {
		b, err := cpa.PolicyBehavior(s.Behavior)
		if err == nil {
			err = b.Validate()
		}
		errs = append(errs, wrap("spec.behavior", err))
		out.Behavior = &b
	}
	return out, errors.Join(errs...)
}

func wrap(field string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", field, err)
}

// httpMethod converts the API's http method to CPA's, applying defaults.
func httpMethod(h swellv1.HTTPMethod) *cpa.Method {
	codes := make([]int, 0, len(h.SuccessCodes))
	for _, c := range h.SuccessCodes {
		codes = append(codes, int(c))
	}
	if len(codes) == 0 {
		codes = []int{200}
	}
	m := &cpa.Method{Type: cpa.MethodHTTP, Timeout: int(h.TimeoutMilliseconds), HTTP: &cpa.HTTP{
		Method: h.Method, URL: h.URL, Headers: h.Headers, SuccessCodes: codes, ParameterMode: h.ParameterMode,
	}}
	if m.HTTP.Method == "" {
		m.HTTP.Method = "GET"
	}
	if m.HTTP.ParameterMode == "" {
		m.HTTP.ParameterMode = cpa.ParameterQuery
	}
	return m
}
