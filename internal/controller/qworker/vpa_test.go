package qworker

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

func usage(cpu, mem string) corev1.ResourceList {
	return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
}

func podMetrics(containers map[string]corev1.ResourceList) metricsv1beta1.PodMetrics {
	pm := metricsv1beta1.PodMetrics{}
	for name, u := range containers {
		pm.Containers = append(pm.Containers, metricsv1beta1.ContainerMetrics{Name: name, Usage: u})
	}
	return pm
}

func TestPeakUsage(t *testing.T) {
	containers := []corev1.Container{{Name: "worker"}, {Name: "sidecar"}}
	cases := []struct {
		name   string
		stored []corev1.ResourceList
		pods   []metricsv1beta1.PodMetrics
		want   []corev1.ResourceList
	}{
		{"first sample of two containers", nil,
			[]metricsv1beta1.PodMetrics{podMetrics(map[string]corev1.ResourceList{"worker": usage("200m", "100Mi"), "sidecar": usage("10m", "20Mi")})},
			[]corev1.ResourceList{usage("200m", "100Mi"), usage("10m", "20Mi")}},
		{"max over pods", nil,
			[]metricsv1beta1.PodMetrics{
				podMetrics(map[string]corev1.ResourceList{"worker": usage("200m", "300Mi")}),
				podMetrics(map[string]corev1.ResourceList{"worker": usage("500m", "100Mi")}),
			},
			[]corev1.ResourceList{usage("500m", "300Mi"), {}}},
		{"within 10 % keeps the old peak", []corev1.ResourceList{usage("500m", "300Mi"), {}},
			[]metricsv1beta1.PodMetrics{podMetrics(map[string]corev1.ResourceList{"worker": usage("540m", "320Mi")})},
			[]corev1.ResourceList{usage("500m", "300Mi"), {}}},
		{"never lowered", []corev1.ResourceList{usage("500m", "300Mi"), {}},
			[]metricsv1beta1.PodMetrics{podMetrics(map[string]corev1.ResourceList{"worker": usage("50m", "10Mi")})},
			[]corev1.ResourceList{usage("500m", "300Mi"), {}}},
		{"unknown containers ignored", nil,
			[]metricsv1beta1.PodMetrics{podMetrics(map[string]corev1.ResourceList{"istio-proxy": usage("1", "1Gi")})},
			[]corev1.ResourceList{{}, {}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := peakUsage(c.stored, c.pods, containers)
			if len(got) != len(c.want) {
				t.Fatalf("got %d entries, want %d", len(got), len(c.want))
			}
			for i := range got {
				for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					g, w := got[i][r], c.want[i][r]
					if g.Cmp(w) != 0 {
						t.Errorf("container %d %s = %s, want %s", i, r, g.String(), w.String())
					}
				}
			}
		})
	}
}
