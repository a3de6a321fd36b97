package cpa

import (
	"context"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

func TestTickScalesWithinMinMax(t *testing.T) {
	cases := []struct {
		name     string
		current  int32
		min, max int32
		eval     string
		want     int32
	}{
		{"up", 2, 1, 10, targetJSON(5), 5},
		{"down", 4, 1, 10, targetJSON(1), 1},
		{"clamped to max", 2, 1, 10, targetJSON(50), 10},
		{"clamped to min", 4, 2, 10, targetJSON(0), 2},
		{"min 0 allows zero", 3, 0, 10, targetJSON(0), 0},
		{"zero with min 1 is autoscaling disabled", 0, 1, 10, targetJSON(5), 0},
		{"min 0 scales up from zero", 0, 0, 10, targetJSON(3), 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, func(cfg *Config) { cfg.MinReplicas, cfg.MaxReplicas = c.min, c.max })
			r.target.replicas = c.current
			r.runner.set("evaluate", answer(c.eval))
			if err := r.a.Tick(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := r.target.current(); got != c.want {
				t.Fatalf("replicas = %d, want %d", got, c.want)
			}
		})
	}
}

func TestFailedTickNeverScales(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(*rig)
		reason string
	}{
		{"not JSON", func(r *rig) { r.runner.set("evaluate", answer("garbage")) }, ReasonFailedEvaluate},
		{"no targetReplicas", func(r *rig) { r.runner.set("evaluate", answer(`{"replicas": 0}`)) }, ReasonFailedEvaluate},
		{"empty output", func(r *rig) { r.runner.set("evaluate", answer("")) }, ReasonFailedEvaluate},
		{"negative", func(r *rig) { r.runner.set("evaluate", answer(targetJSON(-1))) }, ReasonFailedEvaluate},
		{"evaluate fails", func(r *rig) { r.runner.set("evaluate", func([]byte) (string, error) { return "", errBoom }) }, ReasonFailedEvaluate},
		{"metric fails", func(r *rig) { r.runner.set("metric", func([]byte) (string, error) { return "", errBoom }) }, ReasonFailedGetMetrics},
		{"target unreadable", func(r *rig) { r.target.getErr = errBoom }, ReasonFailedGetScale},
		{"scale write fails", func(r *rig) { r.target.scaleErr = errBoom }, ReasonFailedRescale},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, func(cfg *Config) { cfg.MinReplicas = 0 })
			r.runner.set("evaluate", answer(targetJSON(7)))
			c.setup(r)
			for range 3 {
				if err := r.a.Tick(context.Background()); err == nil {
					t.Fatal("Tick succeeded, want an error")
				}
			}
			if got := r.target.current(); got != 2 {
				t.Fatalf("replicas = %d after failed ticks, want 2 (held)", got)
			}
			if ev := r.events(); !hasEvent(ev, "Warning "+c.reason) {
				t.Fatalf("events %q: want a Warning %s", ev, c.reason)
			}
			if r.a.guard.Failures() != 3 {
				t.Fatalf("consecutive failures = %d, want 3", r.a.guard.Failures())
			}
			// Recovery on the next good tick.
			r.target.getErr, r.target.scaleErr = nil, nil
			r.runner.set("metric", answer("5"))
			r.runner.set("evaluate", answer(targetJSON(4)))
			if err := r.a.Tick(context.Background()); err != nil {
				t.Fatalf("recovery tick: %v", err)
			}
			if got := r.target.current(); got != 4 || r.a.guard.Failures() != 0 {
				t.Fatalf("after recovery replicas = %d failures = %d, want 4 and 0", got, r.a.guard.Failures())
			}
		})
	}
}

func TestDownscaleStabilization(t *testing.T) {
	r := newRig(t, func(cfg *Config) { cfg.DownscaleStabilization = 60 })
	steps := []struct {
		advance time.Duration
		eval    int
		want    int32
	}{
		{0, 6, 6},
		{20 * time.Second, 2, 6}, // the peak is still in the window
		{30 * time.Second, 3, 6}, // still
		{15 * time.Second, 3, 3}, // 65 s after the peak: down to the max of the rest
		{0, 8, 8},                // up acts at once
	}
	for i, s := range steps {
		r.clock.Step(s.advance)
		r.runner.set("evaluate", answer(targetJSON(s.eval)))
		if err := r.a.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := r.target.current(); got != s.want {
			t.Fatalf("step %d: replicas = %d, want %d", i, got, s.want)
		}
	}
}

func TestBehaviorLimitsRate(t *testing.T) {
	r := newRig(t, func(cfg *Config) {
		cfg.MaxReplicas = 100
		cfg.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{
			ScaleUp: &autoscalingv2.HPAScalingRules{Policies: []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 1, PeriodSeconds: 60}}},
		}
	})
	r.runner.set("evaluate", answer(targetJSON(10)))
	for i, want := range []int32{3, 3, 3} {
		if err := r.a.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := r.target.current(); got != want {
			t.Fatalf("tick %d: replicas = %d, want %d (one pod per minute)", i, got, want)
		}
		r.clock.Step(10 * time.Second)
	}
	r.clock.Step(60 * time.Second)
	if err := r.a.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.target.current(); got != 4 {
		t.Fatalf("after the period: replicas = %d, want 4", got)
	}
}

func TestPerPodInputsAndHooks(t *testing.T) {
	r := newRig(t, func(cfg *Config) {
		cfg.RunMode = PerPod
		for _, h := range []struct {
			m **Method
			n string
		}{{&cfg.PreMetric, "preMetric"}, {&cfg.PostMetric, "postMetric"}, {&cfg.PreEvaluate, "preEvaluate"}, {&cfg.PostEvaluate, "postEvaluate"}, {&cfg.PreScale, "preScale"}, {&cfg.PostScale, "postScale"}} {
			*h.m = stageMethod(h.n)
		}
	})
	r.runner.set("metric", func(in []byte) (string, error) {
		if strings.Contains(string(in), `"name":"web-a"`) {
			return "1", nil
		}
		return "2", nil
	})
	r.runner.set("evaluate", answer(targetJSON(3)))
	if err := r.a.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	m0 := r.runner.input(t, "metric", 0)
	if m0["runType"] != RunTypeScaler || m0["resource"].(map[string]any)["kind"] != "Pod" {
		t.Errorf("per-pod metric input = %v, want the Pod and runType scaler", m0)
	}
	ev := r.runner.input(t, "evaluate", 0)
	metrics := ev["metrics"].([]any)
	if len(metrics) != 2 || metrics[0].(map[string]any)["resource"] != "web-a" || metrics[1].(map[string]any)["value"] != "2" {
		t.Errorf("evaluate metrics = %v", metrics)
	}
	keys := map[string][]string{
		"preMetric":    {"resource", "runType"},
		"postMetric":   {"resource", "runType", "metrics"},
		"preEvaluate":  {"resource", "runType", "metrics"},
		"postEvaluate": {"resource", "runType", "metrics", "evaluation"},
		"preScale":     {"evaluation", "resource", "minReplicas", "maxReplicas", "targetReplicas", "namespace", "scaleTargetRef", "runType"},
		"postScale":    {"evaluation", "resource", "minReplicas", "maxReplicas", "targetReplicas", "namespace", "scaleTargetRef", "runType"},
	}
	for hook, want := range keys {
		in := r.runner.input(t, hook, 0)
		for _, k := range want {
			if _, ok := in[k]; !ok {
				t.Errorf("%s input lacks %q: %v", hook, k, in)
			}
		}
	}
	if got := r.runner.input(t, "postScale", 0)["evaluation"].(map[string]any)["targetReplicas"]; got != float64(3) {
		t.Errorf("postScale evaluation.targetReplicas = %v, want 3", got)
	}
}

func TestHookFailureFailsTick(t *testing.T) {
	r := newRig(t, func(cfg *Config) { cfg.PreScale = stageMethod("preScale") })
	r.runner.set("evaluate", answer(targetJSON(6)))
	r.runner.set("preScale", func([]byte) (string, error) { return "", errBoom })
	if err := r.a.Tick(context.Background()); err == nil || !strings.Contains(err.Error(), "preScale hook") {
		t.Fatalf("err = %v, want a preScale hook error", err)
	}
	if r.target.current() != 2 || !hasEvent(r.events(), "Warning "+ReasonFailedHook) {
		t.Fatal("a failed preScale hook must hold replicas and record FailedHook")
	}
}

func TestRunAlignsAndTicks(t *testing.T) {
	r := newRig(t, func(cfg *Config) { cfg.Interval = 1000; cfg.StartTime = 60000 })
	r.runner.set("evaluate", answer(targetJSON(5)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.a.Run(ctx) }()
	waitUntil(t, func() bool { return r.clock.HasWaiters() })
	r.clock.Step(59 * time.Second) // not aligned yet: epoch 1_700_000_000 s is 20 s past a minute
	r.clock.Step(40 * time.Second) // aligned: ticker starts
	waitUntil(t, func() bool { return r.clock.HasWaiters() })
	r.clock.Step(time.Second)
	waitUntil(t, func() bool { return r.target.current() == 5 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAlignDelay(t *testing.T) {
	now := time.UnixMilli(125_500)
	if got := alignDelay(now, 60_000); got != 54_500*time.Millisecond {
		t.Errorf("alignDelay = %s, want 54.5s", got)
	}
	if got := alignDelay(now, 1); got != time.Millisecond {
		t.Errorf("alignDelay(startTime 1) = %s, want 1ms", got)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestParseEvaluation pins what an evaluation may print: exactly one JSON
// object (white space around it is fine), as CPA's json.Unmarshal accepts;
// trailing data after it is refused like CPA refuses it.
func TestParseEvaluation(t *testing.T) {
	cases := []struct {
		name, out string
		want      int32
		err       string // "" means accepted
	}{
		{"plain", `{"targetReplicas": 4}`, 4, ""},
		{"newline after", "{\"targetReplicas\": 4}\n", 4, ""},
		{"white space around", " \t\r\n{\"targetReplicas\": 4} \r\n\t", 4, ""},
		{"zero", `{"targetReplicas": 0}`, 0, ""},
		{"other keys ignored", `{"targetReplicas": 2, "why": "queue"}`, 2, ""},
		{"trailing text", `{"targetReplicas": 4} junk`, 0, `trailing data "junk"`},
		{"two objects", `{"targetReplicas": 4}{"targetReplicas": 9}`, 0, "trailing data"},
		{"two objects on two lines", "{\"targetReplicas\": 4}\n{\"targetReplicas\": 9}\n", 0, "trailing data"},
		{"trailing number", `{"targetReplicas": 4} 5`, 0, "trailing data"},
		{"trailing non-JSON space", "{\"targetReplicas\": 4}\u00a0", 0, "trailing data"},
		{"not JSON", "garbage", 0, "not a JSON object"},
		{"empty", "", 0, "not a JSON object"},
		{"no targetReplicas", `{}`, 0, "no targetReplicas"},
		{"negative", `{"targetReplicas": -1}`, 0, "must be >= 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseEvaluation(c.out)
			if c.err == "" {
				if err != nil || got.TargetReplicas != c.want {
					t.Fatalf("ParseEvaluation(%q) = %v, %v; want %d", c.out, got, err, c.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("ParseEvaluation(%q) err = %v, want it to mention %q", c.out, err, c.err)
			}
		})
	}
}
