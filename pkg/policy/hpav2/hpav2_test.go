package hpav2

import (
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/utils/ptr"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

func TestBehavior(t *testing.T) {
	in := &autoscalingv2.HorizontalPodAutoscalerBehavior{
		ScaleDown: &autoscalingv2.HPAScalingRules{
			StabilizationWindowSeconds: ptr.To[int32](60),
			SelectPolicy:               ptr.To(autoscalingv2.MinChangePolicySelect),
			Policies:                   []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 2, PeriodSeconds: 30}},
		},
	}
	got, err := Behavior(in)
	if err != nil {
		t.Fatal(err)
	}
	d := got.ScaleDown
	if d.StabilizationWindow == nil || *d.StabilizationWindow != time.Minute || d.SelectPolicy != policy.SelectMin ||
		len(d.Policies) != 1 || d.Policies[0] != (policy.ScalingPolicy{Type: policy.PodsPolicy, Value: 2, Period: 30 * time.Second}) {
		t.Fatalf("scaleDown = %+v", d)
	}
	if got.ScaleUp.StabilizationWindow != nil || got.ScaleUp.Policies != nil {
		t.Fatalf("unset scaleUp should stay unset (defaults come later): %+v", got.ScaleUp)
	}
	if b, err := Behavior(nil); err != nil || b.ScaleUp.Policies != nil {
		t.Fatalf("Behavior(nil) = %+v, %v", b, err)
	}
	bad := &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: &autoscalingv2.HPAScalingRules{
		Policies: []autoscalingv2.HPAScalingPolicy{{Type: "Nodes", Value: 1, PeriodSeconds: 1}}}}
	if _, err := Behavior(bad); err == nil || !strings.Contains(err.Error(), "behavior.scaleUp.policies[0].type") {
		t.Fatalf("err = %v, want it to name behavior.scaleUp.policies[0].type", err)
	}
}
