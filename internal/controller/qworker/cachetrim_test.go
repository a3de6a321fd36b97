package qworker

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
)

func TestTrimPod(t *testing.T) {
	qworkerRef := metav1.OwnerReference{APIVersion: qv1.GroupVersion.String(), Kind: "QWorker", Name: "w", UID: "q1", Controller: ptr.To(true)}
	rsRef := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "r1", Controller: ptr.To(true)}
	full := func(refs ...metav1.OwnerReference) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: "p", Namespace: "ns", UID: "u1", ResourceVersion: "7", OwnerReferences: refs,
				Labels: map[string]string{LabelQWorker: "w"}, Annotations: map[string]string{AnnotationRetire: "true"},
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}},
			},
			Spec:   corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "i"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning},
		}
	}
	for name, tc := range map[string]struct {
		in        *corev1.Pod
		wantSpec  bool // spec, status, labels and annotations kept
		wantOwner bool
	}{
		"a QWorker's pod keeps all but managed fields": {in: full(qworkerRef), wantSpec: true, wantOwner: true},
		"another controller's pod keeps its identity":  {in: full(rsRef), wantOwner: true},
		"a pod that dropped its owner reference":       {in: full()},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := TrimPod(tc.in.DeepCopy())
			if err != nil {
				t.Fatal(err)
			}
			got := out.(*corev1.Pod)
			if got.ManagedFields != nil {
				t.Errorf("managed fields kept: %v", got.ManagedFields)
			}
			if got.Name != "p" || got.Namespace != "ns" || got.UID != "u1" || got.ResourceVersion != "7" {
				t.Errorf("identity lost: %+v", got.ObjectMeta)
			}
			if (len(got.OwnerReferences) > 0) != tc.wantOwner {
				t.Errorf("owner references %v, want kept=%v", got.OwnerReferences, tc.wantOwner)
			}
			kept := got.Spec.NodeName == "n1" && got.Status.Phase == corev1.PodRunning && got.Labels[LabelQWorker] == "w" && got.Annotations[AnnotationRetire] == "true"
			if kept != tc.wantSpec {
				t.Errorf("spec, status, labels, annotations kept=%v, want %v", kept, tc.wantSpec)
			}
			if len(podOwnerName(got)) != len(podOwnerName(tc.in)) {
				t.Errorf("the owner index reads %v after the trim, %v before", podOwnerName(got), podOwnerName(tc.in))
			}
		})
	}
}

func TestTrimPodLeavesOtherObjects(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}}}
	out, err := TrimPod(node)
	if err != nil || out != node || len(node.ManagedFields) != 1 {
		t.Fatalf("TrimPod(node) = %v, %v; want the node untouched", out, err)
	}
}
