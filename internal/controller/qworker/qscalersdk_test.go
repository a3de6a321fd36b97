package qworker

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestPublishedCurrent: above zero QScaler's workers never see an excess
// (the controller deletes the pods it chose); at zero they all see it and
// leave after their task (the pool drains instead of being deleted).
func TestPublishedCurrent(t *testing.T) {
	cases := []struct {
		mode           RetirementMode
		alive, desired int32
		want           int32
	}{
		{RetireQScalerSDK, 5, 1, 1},
		{RetireQScalerSDK, 5, 0, 5},
		{RetireQScalerSDK, 0, 0, 0},
		{RetireQScalerSDK, 1, 5, 1},
		{RetireQScalerSDK, 3, 3, 3},
		// Swell's SDKs follow their own pod's mark: the status keeps
		// QScaler's meaning, retiring pods included.
		{RetireCooperative, 5, 1, 5},
		{RetireDelete, 5, 1, 5},
		{RetireDelete, 1, 5, 1},
	}
	for _, c := range cases {
		if got := publishedCurrent(c.mode, c.alive, c.desired); got != c.want {
			t.Errorf("publishedCurrent(%s, alive %d, desired %d) = %d, want %d", c.mode, c.alive, c.desired, got, c.want)
		}
	}
}

func TestQScalerDrainsOnlyToZero(t *testing.T) {
	cases := []struct {
		mode    RetirementMode
		desired int32
		want    bool
	}{
		{RetireQScalerSDK, 0, true},
		{RetireQScalerSDK, 1, false},
		{RetireDelete, 0, false},
		{RetireCooperative, 0, false},
	}
	for _, c := range cases {
		if got := qscalerDrains(c.mode, c.desired); got != c.want {
			t.Errorf("qscalerDrains(%s, %d) = %t, want %t", c.mode, c.desired, got, c.want)
		}
	}
}

func TestPullingIntervalEnvPerMode(t *testing.T) {
	cases := []struct {
		mode    RetirementMode
		wantEnv string // "" = not set
	}{
		{RetireCooperative, "5"},
		{RetireDelete, "5"},
		{RetireQScalerSDK, ""},
	}
	for _, c := range cases {
		spec := workerSpec{Retirement: c.mode, PollingInterval: 5 * time.Second}
		podSpec := &corev1.PodSpec{Containers: []corev1.Container{{Name: "w"}}}
		pod := newWorkerPod(podParams{QWorker: "w", Spec: podSpec, Hash: "h", PullingInterval: spec.podPullingInterval()})
		got, set := "", false
		for _, e := range pod.Spec.Containers[0].Env {
			if e.Name == EnvPullingInterval {
				got, set = e.Value, true
			}
		}
		if (c.wantEnv == "") == set || got != c.wantEnv {
			t.Errorf("mode %s: PULLING_INTERVAL set=%v value %q, want %q", c.mode, set, got, c.wantEnv)
		}
	}
}

func TestQScalerSDKKeepsTheUsersPullingInterval(t *testing.T) {
	podSpec := &corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Env: []corev1.EnvVar{{Name: EnvPullingInterval, Value: "7"}}}}}
	spec := workerSpec{Retirement: RetireQScalerSDK, PollingInterval: 5 * time.Second}
	pod := newWorkerPod(podParams{QWorker: "w", Spec: podSpec, Hash: "h", PullingInterval: spec.podPullingInterval()})
	env := pod.Spec.Containers[0].Env
	n := 0
	for _, e := range env {
		if e.Name == EnvPullingInterval {
			n++
			if e.Value != "7" {
				t.Fatalf("PULLING_INTERVAL = %q, want the user's 7", e.Value)
			}
		}
	}
	if n != 1 {
		t.Fatalf("PULLING_INTERVAL appears %d times, want 1", n)
	}
}

func TestHandBacksArePickledNone(t *testing.T) {
	// pickle.dumps(None, protocol=p) for p in 0..5, as Python prints them.
	want := map[string]bool{"N.": true, "\x80\x02N.": true, "\x80\x03N.": true, "\x80\x04N.": true, "\x80\x05N.": true}
	if len(qscalerHandBacks) != len(want) {
		t.Fatalf("%d hand-back forms, want %d", len(qscalerHandBacks), len(want))
	}
	for _, v := range qscalerHandBacks {
		if !want[v] {
			t.Errorf("unexpected hand-back form %q", v)
		}
	}
}
