package qworker

import (
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/policy"
)

func TestQWorkerWatchIgnoresStatusWrites(t *testing.T) {
	base := func() *qv1.QWorker {
		return &qv1.QWorker{ObjectMeta: metav1.ObjectMeta{Name: "w", Namespace: "ns", Generation: 3, ResourceVersion: "10"}}
	}
	now := metav1.Now()
	cases := []struct {
		name   string
		change func(q *qv1.QWorker)
		want   bool
	}{
		{"status write (backlog, lastDecision)", func(q *qv1.QWorker) {
			b := int64(7)
			q.Status.Backlog, q.ResourceVersion = &b, "11"
		}, false},
		{"spec change", func(q *qv1.QWorker) { q.Generation = 4 }, true},
		{"paused", func(q *qv1.QWorker) { q.Annotations = map[string]string{AnnotationPaused: "true"} }, true},
		{"deletion starts", func(q *qv1.QWorker) { q.DeletionTimestamp = &now }, true},
		{"finalizer removed", func(q *qv1.QWorker) { q.Finalizers = []string{"x"} }, true},
	}
	p := qworkerChanged()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, n := base(), base()
			c.change(n)
			if got := p.Update(event.UpdateEvent{ObjectOld: o, ObjectNew: n}); got != c.want {
				t.Fatalf("pass on update = %v, want %v", got, c.want)
			}
		})
	}
}

func TestOutageMessageNamesTheRunningPods(t *testing.T) {
	down := errors.New("dial tcp 10.0.0.1:6379: i/o timeout")
	cases := []struct {
		name     string
		fallback policy.Fallback
		d        decision
		alive    int32
		want     string
	}{
		{"holding", policy.Fallback{FailureThreshold: 3}, decision{MeasureErr: down, Desired: 8, FallingBack: true}, 8,
			"dial tcp 10.0.0.1:6379: i/o timeout; holding 8 replicas (8 worker pods running)"},
		{"fallback applied", policy.Fallback{FailureThreshold: 3, Replicas: 2}, decision{MeasureErr: down, Desired: 2, FallingBack: true}, 8,
			"dial tcp 10.0.0.1:6379: i/o timeout; fallback to 2 replicas (8 worker pods running)"},
		{"decision at zero, pods still there", policy.Fallback{FailureThreshold: 3}, decision{MeasureErr: down, Desired: 0, FallingBack: true}, 8,
			"dial tcp 10.0.0.1:6379: i/o timeout; holding 0 replicas (8 worker pods running)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := outageMessage(workerSpec{Fallback: c.fallback}, c.d, poolView{alive: c.alive})
			if got != c.want {
				t.Fatalf("message %q, want %q", got, c.want)
			}
		})
	}
}
