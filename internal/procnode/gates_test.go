package procnode

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

const testGate corev1.PodConditionType = "swell.dev/taking-tasks"

func gatedPod(gates bool, conds ...corev1.PodCondition) *corev1.Pod {
	p := &corev1.Pod{Status: corev1.PodStatus{Conditions: conds}}
	if gates {
		p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: testGate}}
	}
	return p
}

func cond(t corev1.PodConditionType, s corev1.ConditionStatus) corev1.PodCondition {
	return corev1.PodCondition{Type: t, Status: s}
}

// TestPodConditionsReadinessGates checks that the node, as kubelet, holds
// Ready False until every readiness gate's condition is True, and keeps the
// conditions others wrote.
func TestPodConditionsReadinessGates(t *testing.T) {
	yes, no := corev1.ConditionTrue, corev1.ConditionFalse
	own := func(ready corev1.ConditionStatus) []corev1.PodCondition {
		return []corev1.PodCondition{cond(corev1.ContainersReady, ready), cond(corev1.PodReady, ready)}
	}
	for _, tc := range []struct {
		name       string
		pod        *corev1.Pod
		next       []corev1.PodCondition
		wantReady  corev1.ConditionStatus
		wantReason string
		wantGate   corev1.ConditionStatus // "" for no gate condition kept
	}{
		{"no gate, containers ready", gatedPod(false), own(yes), yes, "", ""},
		{"gate without condition", gatedPod(true), own(yes), no, ReasonReadinessGatesNotReady, ""},
		{"gate False", gatedPod(true, cond(testGate, no)), own(yes), no, ReasonReadinessGatesNotReady, no},
		{"gate True", gatedPod(true, cond(testGate, yes)), own(yes), yes, "", yes},
		{"gate True, containers not ready", gatedPod(true, cond(testGate, yes)), own(no), no, "", yes},
		{"condition without gate is kept", gatedPod(false, cond(testGate, no)), own(yes), yes, "", no},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := slices.Clone(tc.next)
			got := podConditions(tc.pod, tc.next)
			ready := findCondition(got, corev1.PodReady)
			if ready == nil || ready.Status != tc.wantReady || ready.Reason != tc.wantReason {
				t.Errorf("Ready = %+v, want status %s reason %q", ready, tc.wantReady, tc.wantReason)
			}
			if cr := findCondition(got, corev1.ContainersReady); cr == nil || cr.Status != tc.next[0].Status {
				t.Errorf("ContainersReady = %+v, want %s", cr, tc.next[0].Status)
			}
			gate := findCondition(got, testGate)
			switch {
			case tc.wantGate == "" && gate != nil:
				t.Errorf("gate condition %+v appeared", gate)
			case tc.wantGate != "" && (gate == nil || gate.Status != tc.wantGate):
				t.Errorf("gate condition = %+v, want %s kept", gate, tc.wantGate)
			}
			if !slices.Equal(before, tc.next) {
				t.Errorf("podConditions changed its input: %+v", tc.next)
			}
		})
	}
}

// TestReadyStale checks when a pod update calls for a status write: its
// Ready condition disagrees with its containers and readiness gates.
func TestReadyStale(t *testing.T) {
	yes, no := corev1.ConditionTrue, corev1.ConditionFalse
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"no gates", gatedPod(false, cond(corev1.ContainersReady, yes), cond(corev1.PodReady, no)), false},
		{"not written yet", gatedPod(true, cond(testGate, yes)), false},
		{"gate set, Ready False", gatedPod(true, cond(corev1.ContainersReady, yes), cond(corev1.PodReady, no), cond(testGate, yes)), true},
		{"gate set, Ready True", gatedPod(true, cond(corev1.ContainersReady, yes), cond(corev1.PodReady, yes), cond(testGate, yes)), false},
		{"gate cleared, Ready True", gatedPod(true, cond(corev1.ContainersReady, yes), cond(corev1.PodReady, yes), cond(testGate, no)), true},
		{"gate set, containers not ready", gatedPod(true, cond(corev1.ContainersReady, no), cond(corev1.PodReady, no), cond(testGate, yes)), false},
		{"gate unset, Ready False", gatedPod(true, cond(corev1.ContainersReady, yes), cond(corev1.PodReady, no)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := readyStale(tc.pod); got != tc.want {
				t.Errorf("readyStale = %v, want %v", got, tc.want)
			}
		})
	}
}
