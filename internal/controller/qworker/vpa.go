package qworker

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
)

// vpaGrowth is how far usage must exceed the recorded peak before the peak
// moves (QScaler's 10 %), so status is not rewritten for noise.
const vpaGrowth = 1.10

// PodMetricsLister reads PodMetrics of a QWorker's pods from metrics.k8s.io.
type PodMetricsLister interface {
	List(ctx context.Context, namespace, selector string) ([]metricsv1beta1.PodMetrics, error)
}

// MetricsAPI lists PodMetrics through the metrics clientset.
type MetricsAPI struct{ Client metricsclient.Interface }

// List implements PodMetricsLister.
func (m MetricsAPI) List(ctx context.Context, namespace, selector string) ([]metricsv1beta1.PodMetrics, error) {
	list, err := m.Client.MetricsV1beta1().PodMetricses(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("list PodMetrics: %w", err)
	}
	return list.Items, nil
}

// observeVPA folds the pods' current usage into the recorded peaks.
func (r *Reconciler) observeVPA(ctx context.Context, qw *QWorker, stored []corev1.ResourceList) ([]corev1.ResourceList, error) {
	if r.PodMetrics == nil {
		return stored, fmt.Errorf("activateVPA: no metrics.k8s.io client configured")
	}
	sel := labels.SelectorFromSet(labels.Set{LabelQWorker: qw.Name}).String()
	items, err := r.PodMetrics.List(ctx, qw.Namespace, sel)
	if err != nil {
		return stored, err
	}
	return peakUsage(stored, items, qw.Spec.PodSpec.Containers), nil
}

// peakUsage returns, per container index of the pod spec, the highest CPU
// and memory seen, raised only when usage exceeds the recorded peak by more
// than 10 % and never lowered. Containers are matched by name, so pods with
// several containers (which made QScaler's version crash) are handled.
func peakUsage(stored []corev1.ResourceList, pods []metricsv1beta1.PodMetrics, containers []corev1.Container) []corev1.ResourceList {
	out := make([]corev1.ResourceList, len(containers))
	index := map[string]int{}
	for i, c := range containers {
		index[c.Name] = i
		out[i] = corev1.ResourceList{}
		if i < len(stored) {
			for k, v := range stored[i] {
				out[i][k] = v.DeepCopy()
			}
		}
	}
	for _, pm := range pods {
		for _, cm := range pm.Containers {
			i, ok := index[cm.Name]
			if !ok {
				continue
			}
			for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				raise(out[i], name, cm.Usage[name])
			}
		}
	}
	return out
}

// raise records used as the peak of name if it beats the peak by 10 %.
func raise(peaks corev1.ResourceList, name corev1.ResourceName, used resource.Quantity) {
	if used.IsZero() {
		return
	}
	cur, ok := peaks[name]
	if ok && float64(used.MilliValue()) <= float64(cur.MilliValue())*vpaGrowth {
		return
	}
	peaks[name] = used.DeepCopy()
}
