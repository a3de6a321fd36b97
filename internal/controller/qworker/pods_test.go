package qworker

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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
	if pod.Labels[LabelQWorker] != "w" || pod.Labels[LabelPodSpecHash] != "abc" {
		t.Fatalf("labels %v", pod.Labels)
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
