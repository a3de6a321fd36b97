package qworker

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

func TestNewWorkerPodCarriesQScalerEnvAndSwellLabels(t *testing.T) {
	spec := &corev1.PodSpec{Containers: []corev1.Container{
		{Name: "a", Env: []corev1.EnvVar{{Name: "KEEP", Value: "1"}, {Name: EnvPodSpecHash, Value: "stale"}}},
		{Name: "b"},
	}}
	owner := metav1.OwnerReference{APIVersion: "quickube.com/v1alpha1", Kind: "QWorker", Name: "w", UID: "u"}
	pod := newWorkerPod(podParams{Namespace: "ns", QWorker: "w", Owner: owner, Spec: spec, Hash: "abc", PullingInterval: 5 * time.Second})
	if pod.GenerateName != "w-" || pod.Namespace != "ns" {
		t.Fatalf("name %q ns %q, want generateName w- in ns", pod.GenerateName, pod.Namespace)
	}
	wantLabels := map[string]string{LabelQWorker: "w", LabelPodSpecHash: "abc", LegacyLabelQWorker: "w", LegacyLabelPodSpecHash: "abc"}
	for k, v := range wantLabels {
		if pod.Labels[k] != v {
			t.Fatalf("labels %v: want %s=%s (current and legacy keys)", pod.Labels, k, v)
		}
	}
	if missingLabels(pod, "w") != nil {
		t.Fatalf("a new pod lacks labels: %v", missingLabels(pod, "w"))
	}
	if len(pod.OwnerReferences) != 1 || pod.OwnerReferences[0].UID != "u" {
		t.Fatalf("owner references %v", pod.OwnerReferences)
	}
	for _, c := range pod.Spec.Containers {
		got := map[string]string{}
		for _, e := range c.Env {
			if _, dup := got[e.Name]; dup {
				t.Fatalf("container %s has %s twice", c.Name, e.Name)
			}
			got[e.Name] = e.Value
		}
		want := map[string]string{EnvQWorkerName: "w", EnvPodSpecHash: "abc", EnvPullingInterval: "5"}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("container %s env %s=%q, want %q", c.Name, k, got[k], v)
			}
		}
	}
	if spec.Containers[0].Env[1].Value != "stale" {
		t.Fatal("newWorkerPod modified the QWorker's podSpec")
	}
	if podHash(pod) != "abc" {
		t.Fatalf("podHash = %q, want abc", podHash(pod))
	}
}

func TestPodLabelsOldAndNewKeys(t *testing.T) {
	withEnv := []corev1.Container{{Name: "a", Env: []corev1.EnvVar{{Name: EnvPodSpecHash, Value: "h1"}}}}
	tests := []struct {
		name     string
		labels   map[string]string
		env      []corev1.Container
		wantHash string
		wantAdd  map[string]string
	}{
		{"made by QScaler: env only, no labels", nil, withEnv, "h1",
			map[string]string{LabelQWorker: "w", LegacyLabelQWorker: "w", LabelPodSpecHash: "h1", LegacyLabelPodSpecHash: "h1"}},
		{"made by an earlier Swell: legacy labels only",
			map[string]string{LegacyLabelQWorker: "w", LegacyLabelPodSpecHash: "h2"}, nil, "h2",
			map[string]string{LabelQWorker: "w", LabelPodSpecHash: "h2"}},
		{"current and legacy labels", map[string]string{LabelQWorker: "w", LegacyLabelQWorker: "w", LabelPodSpecHash: "h3", LegacyLabelPodSpecHash: "h3"}, nil, "h3", nil},
		{"current hash label wins over legacy", map[string]string{LabelPodSpecHash: "new", LegacyLabelPodSpecHash: "old"}, nil, "new",
			map[string]string{LabelQWorker: "w", LegacyLabelQWorker: "w", LegacyLabelPodSpecHash: "new"}},
		{"no hash anywhere: no hash label", nil, nil, "", map[string]string{LabelQWorker: "w", LegacyLabelQWorker: "w"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: tc.labels}, Spec: corev1.PodSpec{Containers: tc.env}}
			if got := podHash(pod); got != tc.wantHash {
				t.Errorf("podHash = %q, want %q", got, tc.wantHash)
			}
			got := missingLabels(pod, "w")
			if len(got) != len(tc.wantAdd) {
				t.Fatalf("missingLabels = %v, want %v", got, tc.wantAdd)
			}
			for k, v := range tc.wantAdd {
				if got[k] != v {
					t.Fatalf("missingLabels = %v, want %v", got, tc.wantAdd)
				}
			}
		})
	}
}

func TestExpectations(t *testing.T) {
	key := types.NamespacedName{Namespace: "ns", Name: "w"}
	now := time.Unix(1000, 0)
	e := newExpectations()
	if !e.satisfied(key, now) {
		t.Fatal("fresh expectations should be satisfied")
	}
	e.expect(key, now, 2, []string{"p1"})
	e.created(key)
	if e.satisfied(key, now) {
		t.Fatal("satisfied with one creation and one deletion outstanding")
	}
	e.created(key)
	e.observed(key, "p1")
	if !e.satisfied(key, now) {
		t.Fatal("not satisfied after every creation and deletion was observed")
	}
	e.expect(key, now, 1, nil)
	if e.satisfied(key, now.Add(time.Minute)) {
		t.Fatal("satisfied before the TTL with a creation outstanding")
	}
	if !e.satisfied(key, now.Add(expectationTTL+time.Second)) {
		t.Fatal("expectations did not expire after the TTL")
	}
}

// TestRelabelPatchesOnlyPodsMissingLabelsOnce: after an upgrade, a pod made
// by an earlier Swell (legacy labels) and one made by QScaler (none) get
// every label once; a pod with them all, a finished and a terminating pod
// are never patched, and a second pass patches nothing.
func TestRelabelPatchesOnlyPodsMissingLabelsOnce(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = corev1.AddToScheme(scheme)
	env := []corev1.Container{{Name: "a", Env: []corev1.EnvVar{{Name: EnvPodSpecHash, Value: "h"}}}}
	mk := func(name string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: labels}, Spec: corev1.PodSpec{Containers: env}}
	}
	legacy := mk("legacy", map[string]string{LegacyLabelQWorker: "w", LegacyLabelPodSpecHash: "h", "team": "a"})
	qscaler := mk("qscaler", nil)
	current := mk("current", swellLabels("w", "h"))
	finished := mk("finished", nil)
	finished.Status.Phase = corev1.PodSucceeded
	terminating := mk("terminating", nil)
	terminating.DeletionTimestamp = &metav1.Time{Time: t0}
	terminating.Finalizers = []string{"test/keep"}
	patched := map[string]int{}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(legacy, qscaler, current, finished, terminating).
		WithInterceptorFuncs(interceptor.Funcs{
			Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
				patched[obj.GetName()]++
				return c.Patch(ctx, obj, p, opts...)
			},
		}).Build()
	r := &Reconciler{Client: c}
	pass := func() {
		var list corev1.PodList
		if err := c.List(context.Background(), &list); err != nil {
			t.Fatal(err)
		}
		if err := r.relabel(context.Background(), "w", observe(list.Items, t0, time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	pass()
	pass()
	if len(patched) != 2 || patched["legacy"] != 1 || patched["qscaler"] != 1 {
		t.Fatalf("patches per pod %v, want legacy and qscaler once each", patched)
	}
	for _, name := range []string{"legacy", "qscaler"} {
		var pod corev1.Pod
		if err := c.Get(context.Background(), types.NamespacedName{Namespace: "ns", Name: name}, &pod); err != nil {
			t.Fatal(err)
		}
		for k, v := range swellLabels("w", "h") {
			if pod.Labels[k] != v {
				t.Fatalf("pod %s labels %v: want %s=%s", name, pod.Labels, k, v)
			}
		}
		if name == "legacy" && pod.Labels["team"] != "a" {
			t.Fatalf("relabel dropped the user's label: %v", pod.Labels)
		}
	}
}
