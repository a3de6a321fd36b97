package cpa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
)

// fakeTarget is a Deployment-like target in memory.
type fakeTarget struct {
	mu       sync.Mutex
	replicas int32
	pods     []string
	getErr   error
	scaleErr error
	writes   []int32
}

func (f *fakeTarget) Get(context.Context) (*TargetState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.getErr != nil {
		return nil, f.getErr
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "web", "namespace": "default", "uid": "u-1"},
		"spec":     map[string]any{"replicas": int64(f.replicas)},
	}}
	return &TargetState{Object: obj, Replicas: f.replicas, Selector: labels.SelectorFromSet(labels.Set{"app": "web"})}, nil
}

func (f *fakeTarget) Pods(context.Context, *TargetState) ([]corev1.Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]corev1.Pod, 0, len(f.pods))
	for _, n := range f.pods {
		started := metav1.Time{Time: time.Unix(1_600_000_000, 0)}
		out = append(out, corev1.Pod{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: "default"},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &started, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: started}}},
		})
	}
	return out, nil
}

func (f *fakeTarget) Scale(_ context.Context, _ *TargetState, n int32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.scaleErr != nil {
		return f.scaleErr
	}
	f.replicas = n
	f.writes = append(f.writes, n)
	return nil
}

func (f *fakeTarget) current() int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.replicas
}

// fakeRunner answers per stage; a method's entrypoint names its stage.
type fakeRunner struct {
	mu      sync.Mutex
	answers map[string]func(in []byte) (string, error)
	inputs  map[string][]string
}

func (r *fakeRunner) Run(_ context.Context, m *Method, in []byte) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stage := m.Shell.Entrypoint
	r.inputs[stage] = append(r.inputs[stage], string(in))
	if f, ok := r.answers[stage]; ok {
		return f(in)
	}
	return "", nil
}

func (r *fakeRunner) set(stage string, f func(in []byte) (string, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answers[stage] = f
}

func (r *fakeRunner) input(t *testing.T, stage string, i int) map[string]any {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.inputs[stage]) <= i {
		t.Fatalf("stage %s ran %d times, want > %d", stage, len(r.inputs[stage]), i)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(r.inputs[stage][i]), &v); err != nil {
		t.Fatalf("stage %s input is not JSON: %v", stage, err)
	}
	return v
}

func answer(s string) func([]byte) (string, error) {
	return func([]byte) (string, error) { return s, nil }
}

func stageMethod(name string) *Method {
	return &Method{Type: MethodShell, Shell: &Shell{Entrypoint: name}}
}

type rig struct {
	a        *Autoscaler
	target   *fakeTarget
	runner   *fakeRunner
	recorder *record.FakeRecorder
	clock    *clocktesting.FakeClock
}

func newRig(t *testing.T, mutate func(*Config)) *rig {
	t.Helper()
	cfg := NewConfig()
	cfg.ScaleTargetRef = &autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}
	cfg.RunMode = PerResource
	cfg.Metric, cfg.Evaluate = stageMethod("metric"), stageMethod("evaluate")
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &rig{
		target:   &fakeTarget{replicas: 2, pods: []string{"web-a", "web-b"}},
		runner:   &fakeRunner{answers: map[string]func([]byte) (string, error){}, inputs: map[string][]string{}},
		recorder: record.NewFakeRecorder(100),
		clock:    clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0)),
	}
	r.runner.set("metric", answer("5"))
	var km *KubeMetrics
	if len(cfg.KubernetesMetricSpecs) > 0 {
		km = &KubeMetrics{API: &fixedMetrics{}} // tests replace it
	}
	a, err := New(Options{Config: cfg, Target: r.target, Runner: r.runner, KubeMetrics: km, Recorder: r.recorder, Clock: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	r.a = a
	return r
}

// events drains recorded events.
func (r *rig) events() []string {
	var out []string
	for {
		select {
		case e := <-r.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func hasEvent(events []string, prefix string) bool {
	for _, e := range events {
		if strings.HasPrefix(e, prefix) {
			return true
		}
	}
	return false
}

var errBoom = errors.New("boom")

func targetJSON(n int) string { return fmt.Sprintf(`{"targetReplicas": %d}`, n) }
