package qworker

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TrimPod is the pod cache's transform: it keeps what the QWorker
// controller reads and drops the rest before a pod is stored, so the
// controller's memory follows its own workers rather than every pod of the
// cluster.
//
// The cache cannot be narrowed by label: pods that QScaler's controller
// created carry no labels, only the QWorker's controller owner reference,
// and they must keep counting when a cluster moves from QScaler to Swell.
// So every pod is cached, but a pod that no QWorker controls keeps only
// the identity the pod handler needs (name, namespace, UID, owner
// references, deletion timestamp: a worker that dropped its owner
// reference is matched by name), and a QWorker's own pod loses its
// managed fields, which the controller never reads and which are often the
// largest part of a pod.
func TrimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	if len(podOwnerName(pod)) > 0 {
		pod.ManagedFields = nil
		return pod, nil
	}
	return &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:              pod.Name,
			Namespace:         pod.Namespace,
			UID:               pod.UID,
			ResourceVersion:   pod.ResourceVersion,
			OwnerReferences:   pod.OwnerReferences,
			DeletionTimestamp: pod.DeletionTimestamp,
		},
	}, nil
}
