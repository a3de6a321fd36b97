package podautoscaler

import (
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/cpa"
	"github.com/swell-autoscaler/swell/pkg/source"
)

func TestIdleAfter(t *testing.T) {
	failed := errors.New("boom")
	cases := []struct {
		name string
		res  result
		want bool
	}{
		{"held at zero", result{HaveTarget: true, Current: 0, Desired: 0}, true},
		{"scaled down to zero", result{HaveTarget: true, Current: 2, Desired: 0, Scaled: true}, true},
		{"scaled up from zero", result{HaveTarget: true, Current: 0, Desired: 3, Scaled: true}, false},
		{"held above zero", result{HaveTarget: true, Current: 3, Desired: 3}, false},
		{"held above zero by a window", result{HaveTarget: true, Current: 2, Desired: 2}, false},
		{"disabled at zero (minReplicas > 0)", result{HaveTarget: true, Current: 0, Disabled: true}, false},
		{"metric failed at zero", result{HaveTarget: true, Current: 0, FailReason: cpa.ReasonFailedGetMetrics, Err: failed}, true},
		{"rescale from zero failed", result{HaveTarget: true, Current: 0, Desired: 3, FailReason: cpa.ReasonFailedRescale, Err: failed}, true},
		{"metric failed above zero", result{HaveTarget: true, Current: 2, FailReason: cpa.ReasonFailedGetMetrics, Err: failed}, false},
		{"target unreadable", result{FailReason: cpa.ReasonFailedGetScale, Err: failed}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := idleAfter(&c.res); got != c.want {
				t.Errorf("idleAfter(%+v) = %v, want %v", c.res, got, c.want)
			}
		})
	}
}

func TestSubscriptionAfter(t *testing.T) {
	queue := &swellv1.QueueSource{ScalerConfigRef: "redis", Queue: "tasks"}
	cases := []struct {
		name     string
		spec     paSpec
		measured source.Source
		want     subscription
	}{
		{"source measured", paSpec{Source: queue}, sample{}, ensureSubscription},
		{"source not obtained this pass", paSpec{Source: queue}, nil, keepSubscription},
		{"http metric", paSpec{}, nil, stopSubscription},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := subscriptionAfter(c.spec, c.measured); got != c.want {
				t.Errorf("subscriptionAfter = %v, want %v", got, c.want)
			}
		})
	}
}

func TestWakeAllowedFollowsTheLastPass(t *testing.T) {
	key := types.NamespacedName{Namespace: "ns", Name: "worker"}
	r := &Reconciler{}
	if r.wakeAllowed(key) {
		t.Fatal("wake-up allowed before any pass")
	}
	st := r.state(key, paSpec{Generation: 1})
	st.idle.Store(idleAfter(&result{HaveTarget: true}))
	if !r.wakeAllowed(key) {
		t.Fatal("wake-up refused while the target is idle at zero")
	}
	st.idle.Store(idleAfter(&result{HaveTarget: true, Current: 0, Desired: 2, Scaled: true}))
	if r.wakeAllowed(key) {
		t.Fatal("wake-up allowed after the target scaled up")
	}
	st.idle.Store(true)
	if r.state(key, paSpec{Generation: 2}); r.wakeAllowed(key) {
		t.Fatal("wake-up allowed under a new generation before its first pass")
	}
	r.state(key, paSpec{Generation: 2}).idle.Store(true)
	r.forget(key)
	if r.wakeAllowed(key) {
		t.Fatal("wake-up allowed for a deleted PodAutoscaler")
	}
}
