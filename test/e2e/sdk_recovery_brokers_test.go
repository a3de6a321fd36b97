package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
)

// TestSDKTaskOfAPodGoneForGood: on RabbitMQ, NATS JetStream and Kafka (both
// group protocols), a Go-SDK worker pod removed for good while it holds a
// task (SIGKILL, then the pod object deleted with no grace) — the broker
// gives the task back (RabbitMQ when the connection closes, NATS after the
// consumer's 5 s AckWait, Kafka after the group's 6 s session timeout), a
// surviving worker does it exactly once more, and none of the other 1,000
// tasks is lost or done twice. Redis is TestSDKRedisTaskOfAPodGoneForGood.
func TestSDKTaskOfAPodGoneForGood(t *testing.T) {
	c := startController(t)
	for _, b := range []struct {
		name   string
		broker func(context.Context, *testing.T, string) sdkBroker
	}{
		{"rabbitmq", rabbitSDKBroker}, {"nats", natsSDKBroker},
		{"kafka", kafkaSDKBroker}, {"kafka-classic", kafkaClassicSDKBroker},
	} {
		t.Run(b.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			ns := newNamespace(ctx, t)
			taskOfAPodGoneForGood(ctx, t, c, ns, b.broker(ctx, t, ns))
		})
	}
}

// taskOfAPodGoneForGood runs three workers on b, warms them up, then
// queues a slow task with 1,000 short ones, removes the slow task's
// worker for good mid-task and counts every task.
func taskOfAPodGoneForGood(ctx context.Context, t *testing.T, c client.Client, ns string, b sdkBroker) {
	results := ns + "-results"
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	defer func() { _ = rdb.Close() }()
	if err := c.Create(ctx, &qv1.ScalerConfig{ObjectMeta: metav1.ObjectMeta{Name: "broker", Namespace: ns}, Spec: b.scalerConfig}); err != nil {
		t.Fatalf("create ScalerConfig: %v", err)
	}
	args := append(slices.Clone(b.demoArgs), "--task-time", "20ms", "--slow-prefix", "slow-", "--slow-time", "8s")
	if err := c.Create(ctx, recoveryQWorker(t, ns, b.queue, 3, 3, b.env, args...)); err != nil {
		t.Fatal(err)
	}

	// Warm-up: every worker has taken part (on Kafka, joined the group and
	// got partitions) before the slow task comes.
	bodies := append([]string{"slow-under-load"}, taskBodies(recoveryTasks)...)
	b.enqueue(ctx, t, bodies[1:301])
	waitFor(ctx, t, "3 running workers that each finished a task", func() (bool, error) {
		pods, err := alivePods(ctx, ns, "rec")
		if err != nil || len(pods) != 3 {
			return false, err
		}
		done, err := rdb.HGetAll(ctx, results+":swell:pods").Result()
		for _, p := range pods {
			if done[p.Name] == "" {
				return false, err
			}
		}
		return true, err
	})
	b.enqueue(ctx, t, bodies[:1])
	b.enqueue(ctx, t, bodies[301:])
	victim, gone := removeHolder(ctx, t, ns, "rec", "slow-under-load", func(pods []corev1.Pod) (corev1.Pod, bool) {
		return takenBy(ctx, rdb, results, "slow-under-load", pods)
	})
	recovered := waitDoneAgain(ctx, t, rdb, results, "slow-under-load", gone)

	waitFor(ctx, t, "every task done", func() (bool, error) {
		n, err := rdb.SCard(ctx, results+":swell:done").Result()
		return n == int64(len(bodies)), err
	})
	waitFor(ctx, t, "the broker to hold no task", func() (bool, error) {
		n, err := b.left(ctx)
		return n == 0, err
	})
	// The broker holds nothing now (nothing queued, nothing unacked or
	// uncommitted), so no task can run again: the counts are final.
	lost, twice := countTasks(ctx, t, rdb, results, bodies)
	if n, _ := rdb.HGet(ctx, results+":swell:times", "slow-under-load").Int(); n != 1 {
		t.Fatalf("slow-under-load done %d times, want exactly once more (the removed pod's run was cut short)", n)
	}
	if lost != 0 || twice != 0 {
		t.Fatalf("%d of %d tasks lost, %d done twice; want 0 and 0", lost, len(bodies), twice)
	}
	startedNs, err := rdb.HGet(ctx, results+":swell:started", "slow-under-load").Int64()
	if err != nil {
		t.Fatal(err)
	}
	restarted := time.Unix(0, startedNs).Sub(gone)
	if restarted < 0 {
		t.Fatalf("the run of slow-under-load that finished began %v before its worker was removed, want after", -restarted)
	}
	if by := rdb.HGet(ctx, results+":swell:taken", "slow-under-load").Val(); by == victim.Name {
		t.Fatalf("slow-under-load was done by the removed pod %s", by)
	}
	t.Logf("%s: pod %s removed for good holding slow-under-load (8 s); taken again %v after the kill, done %v after; %d tasks, 0 lost, 0 twice",
		b.name, victim.Name, restarted.Round(10*time.Millisecond), recovered.Round(10*time.Millisecond), len(bodies))
}

// takenBy returns the pod among pods that the demo worker recorded in
// <results>:swell:taken as having taken body.
func takenBy(ctx context.Context, rdb *redis.Client, results, body string, pods []corev1.Pod) (corev1.Pod, bool) {
	name, err := rdb.HGet(ctx, results+":swell:taken", body).Result()
	if err != nil {
		return corev1.Pod{}, false
	}
	for _, p := range pods {
		if p.Name == name {
			return p, true
		}
	}
	return corev1.Pod{}, false
}
