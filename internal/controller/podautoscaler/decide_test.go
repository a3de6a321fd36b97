package podautoscaler

import (
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/utils/ptr"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
)

func TestDecideClampsStabilisesAndLimits(t *testing.T) {
	pa := &swellv1.PodAutoscaler{Spec: swellv1.PodAutoscalerSpec{
		MinReplicas: 1, MaxReplicas: 10, DownscaleStabilizationSeconds: 60,
		Metric:   swellv1.MetricMethod{HTTP: &swellv1.HTTPMethod{URL: "http://metric"}},
		Evaluate: swellv1.EvaluateMethod{Expression: "value"},
		Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: &autoscalingv2.HPAScalingRules{
			StabilizationWindowSeconds: ptr.To[int32](0),
			Policies:                   []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 2, PeriodSeconds: 60}},
		}},
	}}
	spec, err := decodeSpec(pa)
	if err != nil {
		t.Fatal(err)
	}
	st := newObjState(spec)
	now := time.Unix(1000, 0)
	steps := []struct {
		current, wanted, want int32
		reason                string
	}{
		{current: 2, wanted: 50, want: 4, reason: "behavior ScaleUpLimit"},
		{current: 4, wanted: 0, want: 4, reason: "clamped to [1, 10]; downscale stabilisation (1m0s) holds the highest recent evaluation 10; behavior ScaleUpLimit"},
		{current: 4, wanted: 3, want: 4, reason: "within [1, 10]; downscale stabilisation"},
	}
	for i, s := range steps {
		got, why := st.decide(now.Add(time.Duration(i)*time.Second), spec, s.current, s.wanted)
		if got != s.want || !strings.Contains(why, s.reason) {
			t.Errorf("step %d: decide(%d, %d) = %d (%s), want %d (%s)", i, s.current, s.wanted, got, why, s.want, s.reason)
		}
		if got != s.current {
			st.scaled(now, s.current, got)
		}
	}
}

func TestDecodeSpecRejectsWhatCELCannot(t *testing.T) {
	pa := &swellv1.PodAutoscaler{Spec: swellv1.PodAutoscalerSpec{MinReplicas: 1, MaxReplicas: 2, Evaluate: swellv1.EvaluateMethod{Expression: "exec(value)"}}}
	if _, err := decodeSpec(pa); err == nil || !strings.Contains(err.Error(), "spec.evaluate.expression") {
		t.Errorf("decodeSpec = %v, want an error naming spec.evaluate.expression", err)
	}
}
