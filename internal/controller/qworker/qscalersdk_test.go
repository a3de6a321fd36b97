package qworker

import (
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
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

// TestDownHoldSpansDips: a QScalerSDK pool follows every rise at once and
// shrinks only to the highest count of the last window; a failed
// measurement is not held here.
func TestDownHoldSpansDips(t *testing.T) {
	key := types.NamespacedName{Namespace: "ns", Name: "pool"}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at             time.Duration
		raw, prev, max int32
		err            error
		want           int32
	}{
		{0, 3, 0, 10, nil, 3},                      // rise: at once
		{time.Second, 1, 3, 10, nil, 3},            // dip 1 s later: held at 3
		{2 * time.Second, 0, 3, 10, nil, 3},        // reads empty: held
		{4 * time.Second, 2, 3, 10, nil, 3},        // 3 still in the window
		{6 * time.Second, 0, 3, 10, nil, 2},        // 3 left the window; 2 did not
		{7 * time.Second, 5, 2, 10, nil, 5},        // rise: at once
		{13 * time.Second, 0, 5, 10, nil, 0},       // 6 s of nothing: zero
		{14 * time.Second, 0, 1, 10, errBroker, 0}, // failed measurement: not this hold's call
		{15 * time.Second, 4, 0, 10, nil, 4},       // rise
		{16 * time.Second, 1, 4, 1, nil, 1},        // maxReplicas lowered to 1: at once
	}
	var h downHolds
	for i, s := range steps {
		d := decision{Raw: s.raw, Previous: s.prev, Desired: s.raw, MeasureErr: s.err}
		got := h.apply(t0.Add(s.at), key, downWindowFor(time.Second), s.max, d)
		if got.Desired != s.want {
			t.Errorf("step %d (t=%s raw=%d prev=%d): desired %d, want %d (%s)", i, s.at, s.raw, s.prev, got.Desired, s.want, got.Reason)
		}
	}
	h.forget(key)
	if got := h.apply(t0.Add(30*time.Second), key, downWindowFor(time.Second), 10, decision{Previous: 3}); got.Desired != 0 {
		t.Errorf("after forget: desired %d, want 0 (nothing remembered)", got.Desired)
	}
	for range 200 {
		h.apply(t0.Add(31*time.Second), key, time.Hour, 10, decision{Desired: 1, Previous: 1})
	}
	if n := len(h.recs[key]); n > maxRecommendations {
		t.Errorf("history grew to %d entries, bound %d", n, maxRecommendations)
	}
}

var errBroker = errors.New("broker down")

func TestDownWindowIsTwoPollsAtLeast(t *testing.T) {
	for _, c := range []struct{ interval, want time.Duration }{
		{time.Second, 5 * time.Second}, {5 * time.Second, 10 * time.Second}, {0, 5 * time.Second},
	} {
		if got := downWindowFor(c.interval); got != c.want {
			t.Errorf("downWindowFor(%s) = %s, want %s", c.interval, got, c.want)
		}
	}
}
