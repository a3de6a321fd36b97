package procnode

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	cases := []struct{ in, want string }{
		{"plain", "plain"},
		{"$(A)", "1"},
		{"x-$(A)-$(B)-y", "x-1-two-y"},
		{"$(MISSING)", "$(MISSING)"},
		{"$$(A)", "$(A)"},
		{"cost $5", "cost $5"},
		{"open $(A", "open $(A"},
		{"trailing $", "trailing $"},
	}
	for _, c := range cases {
		if got := expand(c.in, vars); got != c.want {
			t.Errorf("expand(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestFieldValue(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: "w-1", Namespace: "ns", UID: "u-1",
		Labels: map[string]string{"app": "w"}, Annotations: map[string]string{"a/b": "c"},
	}, Spec: corev1.PodSpec{NodeName: "n1", ServiceAccountName: "sa"}}
	cases := []struct{ path, want string }{
		{"metadata.name", "w-1"},
		{"metadata.namespace", "ns"},
		{"metadata.uid", "u-1"},
		{"metadata.labels['app']", "w"},
		{"metadata.annotations['a/b']", "c"},
		{"spec.nodeName", "n1"},
		{"spec.serviceAccountName", "sa"},
		{"status.podIP", "127.0.0.1"},
	}
	for _, c := range cases {
		got, err := fieldValue(pod, c.path)
		if err != nil || got != c.want {
			t.Errorf("fieldValue(%q) = %q, %v; want %q", c.path, got, err, c.want)
		}
	}
	if _, err := fieldValue(pod, "spec.unknown"); err == nil {
		t.Error("fieldValue(spec.unknown) succeeded, want an error")
	}
}

func TestResourceValue(t *testing.T) {
	c := &corev1.Container{Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
	}}
	cases := []struct {
		res, divisor, want string
	}{
		{"requests.cpu", "", "1"},
		{"requests.cpu", "1m", "250"},
		{"limits.memory", "1Mi", "64"},
		{"limits.cpu", "", "0"},
	}
	for _, tc := range cases {
		ref := &corev1.ResourceFieldSelector{Resource: tc.res}
		if tc.divisor != "" {
			ref.Divisor = resource.MustParse(tc.divisor)
		}
		got, err := resourceValue(c, ref)
		if err != nil || got != tc.want {
			t.Errorf("resourceValue(%s / %q) = %q, %v; want %q", tc.res, tc.divisor, got, err, tc.want)
		}
	}
}
