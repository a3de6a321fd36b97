package qworker

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
)

// TestExpectationsSettleForOrphanedPods plays the race a QScaler-SDK worker
// makes: the controller marks or deletes a pod at the moment the worker
// drops its owner reference to leave, so every later event of the pod
// names no QWorker. The expectation must still be settled by those events,
// not wait out expectationTTL with the pool frozen.
func TestExpectationsSettleForOrphanedPods(t *testing.T) {
	key := types.NamespacedName{Namespace: "team", Name: "workers"}
	owned := func(name string, annotations map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team", Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: qv1.GroupVersion.String(), Kind: "QWorker", Name: "workers", Controller: ptr.To(true)}}}}
	}
	orphan := func(p *corev1.Pod) *corev1.Pod {
		p = p.DeepCopy()
		p.OwnerReferences = nil
		return p
	}
	marked := map[string]string{AnnotationRetire: "true"}
	cases := []struct {
		name string
		// send delivers the events the cache shows after the change.
		send func(h *podHandler, q workqueue.TypedRateLimitingInterface[reconcile.Request])
	}{
		{"mark lands after the owner reference was dropped", func(h *podHandler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			h.Update(context.Background(), event.UpdateEvent{ObjectOld: owned("w-1", nil), ObjectNew: orphan(owned("w-1", nil))}, q)
			h.Update(context.Background(), event.UpdateEvent{ObjectOld: orphan(owned("w-1", nil)), ObjectNew: orphan(owned("w-1", marked))}, q)
		}},
		{"delete of a pod that already dropped its owner reference", func(h *podHandler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			h.Delete(context.Background(), event.DeleteEvent{Object: orphan(owned("w-1", nil))}, q)
		}},
		{"mark and owner reference drop in one update", func(h *podHandler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			h.Update(context.Background(), event.UpdateEvent{ObjectOld: owned("w-1", nil), ObjectNew: orphan(owned("w-1", marked))}, q)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			exp := newExpectations()
			now := time.Unix(1000, 0)
			exp.expect(key, now, 0, []string{"w-1"})
			other := types.NamespacedName{Namespace: "elsewhere", Name: "workers"}
			exp.expect(other, now, 0, []string{"w-1"})
			q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
			defer q.ShutDown()
			c.send(&podHandler{exp: exp}, q)
			if !exp.satisfied(key, now.Add(time.Second)) {
				t.Error("the expectation is still outstanding: the QWorker would wait for the TTL")
			}
			if exp.satisfied(other, now.Add(time.Second)) {
				t.Error("a pod of the same name in another namespace settled a foreign expectation")
			}
			if q.Len() == 0 {
				t.Error("the QWorker was not woken")
			}
		})
	}
}
