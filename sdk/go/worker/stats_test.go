package worker

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/swell-autoscaler/swell/pkg/source/stats"
)

// TestStatsReporterWritesNoMoreThanOncePerInterval checks the cost rule:
// no write while idle, none per task, at most one per interval, and a last
// write of what is left when the worker leaves.
func TestStatsReporterWritesNoMoreThanOncePerInterval(t *testing.T) {
	ctx := context.Background()
	kube := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "w-1", Namespace: "ns"}})
	patches := 0
	kube.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		patches++
		return false, nil, nil
	})
	now := time.Unix(1000, 0)
	s := newStatsReporter(kube, Identity{Namespace: "ns", Pod: "w-1", StatsInterval: 10 * time.Second}, func() time.Time { return now })

	steps := []struct {
		name        string
		tasks       int
		advance     time.Duration
		force       bool
		wantPatches int
		wantTasks   int64
	}{
		{name: "idle writes nothing", wantPatches: 0},
		{name: "first tasks are written", tasks: 3, wantPatches: 1, wantTasks: 3},
		{name: "more tasks within the interval wait", tasks: 50, advance: 5 * time.Second, wantPatches: 1, wantTasks: 3},
		{name: "after the interval one write", advance: 5 * time.Second, wantPatches: 2, wantTasks: 53},
		{name: "nothing new, no write", advance: time.Minute, wantPatches: 2, wantTasks: 53},
		{name: "leaving flushes at once", tasks: 1, force: true, wantPatches: 3, wantTasks: 54},
	}
	for _, st := range steps {
		for range st.tasks {
			s.task(200*time.Millisecond, false)
		}
		now = now.Add(st.advance)
		if err := s.write(ctx, st.force); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		pod, err := kube.CoreV1().Pods("ns").Get(ctx, "w-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var got stats.Report
		if v, ok := pod.Annotations[stats.Annotation]; ok {
			if got, err = stats.Decode(v); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		if patches != st.wantPatches || got.Tasks != st.wantTasks {
			t.Fatalf("%s: %d patches, report %+v; want %d patches, %d tasks", st.name, patches, got, st.wantPatches, st.wantTasks)
		}
	}
}

// deadLetterQueue is a Queue that keeps a dead-letter count.
type deadLetterQueue struct{ dead int64 }

func (q *deadLetterQueue) Take(context.Context) (Delivery, error) { return nil, nil }
func (q *deadLetterQueue) DeadLettered() int64                    { return q.dead }

// TestStatsReporterCountsFailuresAndDeadLetters checks that handed-back
// tasks are reported as failed and the queue's dead-letter count is read
// at report time, while a queue without one reports none.
func TestStatsReporterCountsFailuresAndDeadLetters(t *testing.T) {
	for _, tc := range []struct {
		name  string
		queue Queue
		want  stats.Report
	}{
		{name: "queue keeps a dead-letter count", queue: &deadLetterQueue{dead: 2},
			want: stats.Report{Tasks: 3, BusySeconds: 3, Concurrency: 1, Failed: 2, DeadLettered: 2}},
		{name: "queue without one", queue: queueFunc(nil),
			want: stats.Report{Tasks: 3, BusySeconds: 3, Concurrency: 1, Failed: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			kube := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "w-1", Namespace: "ns"}})
			s := newStatsReporter(kube, Identity{Namespace: "ns", Pod: "w-1"}, func() time.Time { return time.Unix(1000, 0) })
			s.countDeadLetters(tc.queue)
			s.task(time.Second, false)
			s.task(time.Second, true)
			s.task(time.Second, true)
			if err := s.write(ctx, true); err != nil {
				t.Fatal(err)
			}
			pod, err := kube.CoreV1().Pods("ns").Get(ctx, "w-1", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := stats.Decode(pod.Annotations[stats.Annotation])
			if err != nil || got != tc.want {
				t.Fatalf("report %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// queueFunc is a Queue without a dead-letter count.
type queueFunc func(context.Context) (Delivery, error)

func (f queueFunc) Take(ctx context.Context) (Delivery, error) { return f(ctx) }
