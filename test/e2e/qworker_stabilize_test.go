package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/utils/ptr"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// TestQWorkerDefaultScaleDownStabilisation runs two QWorkers side by side
// on kwok pods (1 s polling, mode Delete, 3 tasks each → 3 pods): "held"
// on the defaults, "control" with behavior.scaleDown.stabilizationWindowSeconds
// 0. Both queues empty for ~2 s and fill again at once. From pod watches:
// the control retires pods on the dip (so the dip was seen), the default
// pool retires none and creates none. Then both queues empty for good:
// the default pool retires its pods only once the default window has
// passed, and reaches 0.
func TestQWorkerDefaultScaleDownStabilisation(t *testing.T) {
	ctx, c, ns, rdb, queue := redisFixture(t, 4*time.Minute)
	window := policy.QWorkerDownWindow(time.Second)
	queues := map[string]string{"held": queue, "control": queue + "-control"}
	held := kwokQWorker(ns, "held", queues["held"], 0, 5, 1)
	control := kwokQWorker(ns, "control", queues["control"], 0, 5, 1)
	control.Spec.ScaleConfig.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{
		ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To[int32](0)}}
	logs := map[string]*retirePodLog{"held": watchPods(ctx, t, ns, "held"), "control": watchPods(ctx, t, ns, "control")}
	fill := func() {
		for _, q := range queues {
			if err := rdb.RPush(ctx, q, "a", "b", "c").Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	empty := func() {
		for _, q := range queues {
			if err := rdb.Del(ctx, q).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	fill()
	if err := c.Create(ctx, held); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, control); err != nil {
		t.Fatal(err)
	}
	waitForRunningPods(ctx, t, ns, "held", 3)
	waitForRunningPods(ctx, t, ns, "control", 3)

	// Momentary dips: repeated (at most three) until the control has
	// retired a pod, so the dip is known to have reached the controller.
	dipsFrom := time.Now()
	dips := 0
	for dips < 3 && retired(logs["control"], dipsFrom) == 0 {
		dips++
		empty()
		sleepCtx(ctx, t, 2*time.Second)
		fill()
		sleepCtx(ctx, t, 3*time.Second)
	}
	// Past the window, so the default pool's decisions on the dip are all
	// in, then back at 3 for both.
	sleepCtx(ctx, t, window)
	waitForRunningPods(ctx, t, ns, "control", 3)
	controlRetired, heldRetired := retired(logs["control"], dipsFrom), retired(logs["held"], dipsFrom)
	heldCreated := logs["held"].addedSince(dipsFrom)
	t.Logf("%d momentary dip(s) of ~2 s: stabilizationWindowSeconds 0 retired %d pods and created %d; the default (%s) retired %d and created %d",
		dips, controlRetired, logs["control"].addedSince(dipsFrom), window, heldRetired, heldCreated)
	if controlRetired == 0 {
		t.Fatalf("the control pool retired nothing on %d dips: the dips never reached the controller, the test proves nothing", dips)
	}
	if heldRetired != 0 || heldCreated != 0 {
		t.Fatalf("the default pool retired %d pods and created %d on a momentary dip, want 0 and 0", heldRetired, heldCreated)
	}

	// A lasting drop: the default pool shrinks, after the window.
	empty()
	dropped := time.Now()
	waitFor(ctx, t, "the default pool to reach 0", func() (bool, error) {
		pods, err := alivePods(ctx, ns, "held")
		return err == nil && len(pods) == 0, err
	})
	first := firstRetirement(logs["held"], dropped)
	after := first.Sub(dropped)
	t.Logf("lasting drop: the default pool's first retirement %.1f s after the queue emptied (window %s), at 0 after %.1f s",
		after.Seconds(), window, time.Since(dropped).Seconds())
	fmt.Printf("qworker e2e: default scale-down window %s: %d momentary dip(s) retired 0 pods (control with window 0: %d); lasting drop retired after %.1f s\n",
		window, dips, controlRetired, after.Seconds())
	// The last high reading can precede the drop by a poll (1 s) plus the
	// measurement's own delay; the hold runs from that reading.
	if after < window-2*time.Second {
		t.Fatalf("the default pool retired %.1f s after the drop, inside its %s window", after.Seconds(), window)
	}
}

// retired counts pods of l marked for retirement, or deleted since from.
func retired(l *retirePodLog, from time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.marked)
	for uid, at := range l.deleted {
		if at.After(from) && !l.marked[uid] {
			n++
		}
	}
	return n
}

// firstRetirement is the earliest deletion in l after from.
func firstRetirement(l *retirePodLog, from time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, at := range l.deleted {
		if at.After(from) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first
}

// sleepCtx waits d, failing the test when ctx ends first.
func sleepCtx(ctx context.Context, t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	case <-time.After(d):
	}
}
