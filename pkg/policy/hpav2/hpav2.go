// Package hpav2 converts Kubernetes autoscaling/v2 types into the policy
// core's plain structs. It lives apart from pkg/policy so that the decision
// code itself keeps no Kubernetes imports, while every kind that embeds an
// HPA behavior (QWorker, PodAutoscaler, CPA configs) converts it one way.
package hpav2

import (
	"fmt"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// Behavior converts an HPA v2 behavior; field names in errors are relative
// to the behavior ("behavior.scaleUp.policies[0].type").
func Behavior(b *autoscalingv2.HorizontalPodAutoscalerBehavior) (policy.Behavior, error) {
	if b == nil {
		return policy.Behavior{}, nil
	}
	up, err := rules("behavior.scaleUp", b.ScaleUp)
	if err != nil {
		return policy.Behavior{}, err
	}
	down, err := rules("behavior.scaleDown", b.ScaleDown)
	if err != nil {
		return policy.Behavior{}, err
	}
	return policy.Behavior{ScaleUp: up, ScaleDown: down}, nil
}

func rules(key string, r *autoscalingv2.HPAScalingRules) (policy.ScalingRules, error) {
	if r == nil {
		return policy.ScalingRules{}, nil
	}
	out := policy.ScalingRules{}
	if r.StabilizationWindowSeconds != nil {
		w := time.Duration(*r.StabilizationWindowSeconds) * time.Second
		out.StabilizationWindow = &w
	}
	if r.SelectPolicy != nil {
		out.SelectPolicy = policy.SelectPolicy(*r.SelectPolicy)
	}
	for i, p := range r.Policies {
		if p.Type != autoscalingv2.PodsScalingPolicy && p.Type != autoscalingv2.PercentScalingPolicy {
			return out, fmt.Errorf("%s.policies[%d].type %q: want Pods or Percent", key, i, p.Type)
		}
		out.Policies = append(out.Policies, policy.ScalingPolicy{
			Type:   policy.ScalingPolicyType(p.Type),
			Value:  p.Value,
			Period: time.Duration(p.PeriodSeconds) * time.Second,
		})
	}
	return out, nil
}
