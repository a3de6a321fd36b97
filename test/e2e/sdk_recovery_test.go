package e2e

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/source/redis/reliable"
	"github.com/swell-autoscaler/swell/sdk/go/queue/redisq"
)

// recoveryTasks is how many tasks each recovery case counts.
const recoveryTasks = 1000

// recoveryQWorker is an SDK-worker QWorker on the process node running
// `swell demo-worker` with args after the common ones.
func recoveryQWorker(t *testing.T, ns, queue string, minR, maxR int32, brokerEnv []corev1.EnvVar, args ...string) *qv1.QWorker {
	cmd := append([]string{buildSwell(t), "demo-worker", "--redis", env.RedisAddr, "--results", ns + "-results"}, args...)
	q := sdkQWorker(ns, "rec", queue, cmd, brokerEnv, maxR)
	q.Spec.ScaleConfig.MinReplicas = minR
	return q
}

// forceGone removes a pod for good, as a lost node would: SIGKILL its
// worker process (no hand-back, no clean exit) and delete the pod object
// with no grace, so nothing restarts it.
func forceGone(ctx context.Context, t *testing.T, p corev1.Pod) {
	t.Helper()
	if len(p.Status.ContainerStatuses) == 0 {
		t.Fatalf("pod %s has no container status", p.Name)
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "process://"))
	if err != nil || pid <= 0 {
		t.Fatalf("pod %s has no process ID in %q", p.Name, p.Status.ContainerStatuses[0].ContainerID)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL pod %s (pid %d): %v", p.Name, pid, err)
	}
	if err := env.Clientset.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatalf("delete pod %s: %v", p.Name, err)
	}
}

// heldBy returns the pod of ns/qw whose Redis processing list holds body.
func heldBy(ctx context.Context, rdb *redis.Client, queue, owner, body string, pods []corev1.Pod) (corev1.Pod, bool) {
	for _, p := range pods {
		held, err := rdb.LRange(ctx, reliable.Processing(queue, reliable.Member(owner, p.Name)), 0, -1).Result()
		if err == nil && len(held) > 0 && held[0] == body {
			return p, true
		}
	}
	return corev1.Pod{}, false
}

// removeHolder waits until a running worker of the QWorker ns/qw holds
// body (holder picks it from the live pods), removes that pod for good
// (forceGone) and returns it with the time of the kill.
func removeHolder(ctx context.Context, t *testing.T, ns, qw, body string, holder func([]corev1.Pod) (corev1.Pod, bool)) (corev1.Pod, time.Time) {
	t.Helper()
	var victim corev1.Pod
	waitFor(ctx, t, "a worker holding "+body, func() (bool, error) {
		pods, err := alivePods(ctx, ns, qw)
		if err != nil {
			return false, err
		}
		p, ok := holder(pods)
		victim = p
		return ok && p.Status.Phase == corev1.PodRunning, nil
	})
	gone := time.Now()
	forceGone(ctx, t, victim)
	return victim, gone
}

// waitDoneAgain waits until a worker records body as finished in results
// and returns how long that was after since.
func waitDoneAgain(ctx context.Context, t *testing.T, rdb *redis.Client, results, body string, since time.Time) time.Duration {
	t.Helper()
	waitFor(ctx, t, body+" done again", func() (bool, error) {
		n, err := rdb.HGet(ctx, results+":swell:times", body).Int()
		return n >= 1, ignoreNil(err)
	})
	return time.Since(since)
}

// countTasks returns how many of bodies were never done and how many more
// than once.
func countTasks(ctx context.Context, t *testing.T, rdb *redis.Client, results string, bodies []string) (lost, twice int) {
	t.Helper()
	times, err := rdb.HGetAll(ctx, results+":swell:times").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bodies {
		switch n, _ := strconv.Atoi(times[b]); {
		case n == 0:
			lost++
		case n > 1:
			twice++
		}
	}
	return lost, twice
}

// TestSDKRedisTaskOfAPodGoneForGood: a Redis worker pod removed for good
// while it holds a task (SIGKILL, then the pod object deleted with no
// grace; minReplicas 0) — its task is done exactly once more by the
// survivors' periodic recovery under load, and, once the pool is at zero,
// because the Redis source counts the dead worker's task as backlog, the
// pool starts a worker and that worker recovers it.
func TestSDKRedisTaskOfAPodGoneForGood(t *testing.T) {
	c := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	queue, results, owner := ns+"-tasks", ns+"-results", ns+"/rec"
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	defer func() { _ = rdb.Close() }()
	if err := c.Create(ctx, redisScalerConfig(ns, "broker", env.RedisAddr)); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, recoveryQWorker(t, ns, queue, 0, 3, []corev1.EnvVar{{Name: "REDIS_ADDR", Value: env.RedisAddr}},
		"--queue", queue, "--task-time", "20ms", "--slow-prefix", "slow-", "--slow-time", "8s")); err != nil {
		t.Fatal(err)
	}

	// Under load: 1,000 short tasks and one slow one; the worker holding
	// the slow one goes for good.
	bodies := append([]string{"slow-under-load"}, taskBodies(recoveryTasks)...)
	lpush(ctx, t, rdb, queue, bodies[:1])
	lpush(ctx, t, rdb, queue, bodies[1:])
	holder := func(body string) func([]corev1.Pod) (corev1.Pod, bool) {
		return func(pods []corev1.Pod) (corev1.Pod, bool) { return heldBy(ctx, rdb, queue, owner, body, pods) }
	}
	victim, gone := removeHolder(ctx, t, ns, "rec", "slow-under-load", holder("slow-under-load"))
	underLoad := waitDoneAgain(ctx, t, rdb, results, "slow-under-load", gone)
	waitFor(ctx, t, "every task done", func() (bool, error) {
		n, err := rdb.SCard(ctx, results+":swell:done").Result()
		return n == int64(len(bodies)), err
	})
	lost, twice := countTasks(ctx, t, rdb, results, bodies)
	if lost != 0 || twice != 0 {
		t.Fatalf("under load: %d of %d tasks lost, %d done twice; want 0 and 0 (the dead pod's task was cut short, so once more means once)", lost, len(bodies), twice)
	}
	t.Logf("under load: pod %s removed for good holding slow-under-load; done again %v later (survivors' recovery); %d tasks, 0 lost, 0 twice",
		victim.Name, underLoad.Round(100*time.Millisecond), len(bodies))

	// At zero: the pool drains to 0, one slow task arrives, its worker goes
	// for good, and nothing else is queued.
	waitFor(ctx, t, "the pool at zero", func() (bool, error) {
		pods, err := alivePods(ctx, ns, "rec")
		return err == nil && len(pods) == 0, err
	})
	lpush(ctx, t, rdb, queue, []string{"slow-at-zero"})
	victim, gone = removeHolder(ctx, t, ns, "rec", "slow-at-zero", holder("slow-at-zero"))
	atZero := waitDoneAgain(ctx, t, rdb, results, "slow-at-zero", gone)
	time.Sleep(5 * time.Second) // a second run would have started by now
	if n, _ := rdb.HGet(ctx, results+":swell:times", "slow-at-zero").Int(); n != 1 {
		t.Fatalf("slow-at-zero done %d times, want exactly once more", n)
	}
	held, err := rdb.Keys(ctx, redisq.ProcessingKey(queue, "*")).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range held {
		if n := rdb.LLen(ctx, k).Val(); n != 0 {
			t.Errorf("%s still holds %d tasks", k, n)
		}
	}
	t.Logf("at zero (minReplicas 0, empty list): pod %s removed for good holding slow-at-zero; done exactly once more %v later (source counted it, a new worker recovered it)",
		victim.Name, atZero.Round(100*time.Millisecond))
}

func ignoreNil(err error) error {
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// TestSDKRedisPoisonTaskDeadLettered: a task that always fails is tried
// maxAttempts times, with backoff, then lands in <queue>:dead, and every
// other of 1,000 tasks is done once.
func TestSDKRedisPoisonTaskDeadLettered(t *testing.T) {
	c := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	queue, results := ns+"-tasks", ns+"-results"
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	defer func() { _ = rdb.Close() }()
	if err := c.Create(ctx, redisScalerConfig(ns, "broker", env.RedisAddr)); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, recoveryQWorker(t, ns, queue, 0, 3, []corev1.EnvVar{{Name: "REDIS_ADDR", Value: env.RedisAddr}},
		"--queue", queue, "--task-time", "10ms", "--fail-prefix", "poison", "--max-attempts", "3")); err != nil {
		t.Fatal(err)
	}
	bodies := taskBodies(recoveryTasks)
	lpush(ctx, t, rdb, queue, []string{"poison-1"})
	lpush(ctx, t, rdb, queue, bodies)
	waitFor(ctx, t, "every task done and the poison dead-lettered", func() (bool, error) {
		n, err := rdb.SCard(ctx, results+":swell:done").Result()
		return n == int64(len(bodies)) && rdb.LLen(ctx, reliable.Dead(queue)).Val() == 1, err
	})
	if got := rdb.LRange(ctx, reliable.Dead(queue), 0, -1).Val(); len(got) != 1 || got[0] != "poison-1" {
		t.Fatalf("%s = %v, want [poison-1]", reliable.Dead(queue), got)
	}
	if n, _ := rdb.HGet(ctx, results+":swell:failed", "poison-1").Int(); n != 3 {
		t.Fatalf("poison-1 failed %d times, want maxAttempts = 3", n)
	}
	lost, twice := countTasks(ctx, t, rdb, results, bodies)
	if lost != 0 || twice != 0 {
		t.Fatalf("%d of %d tasks lost, %d done twice; want 0 and 0", lost, len(bodies), twice)
	}
	if n := rdb.LLen(ctx, queue).Val() + rdb.ZCard(ctx, reliable.Delayed(queue)).Val(); n != 0 {
		t.Fatalf("%d tasks still queued or waiting a retry", n)
	}
	t.Logf("poison-1 failed 3 times then went to %s; %d other tasks: 0 lost, 0 twice", reliable.Dead(queue), len(bodies))
}

// TestSDKNATSLongTaskRunsOnce: a 60 s task on a JetStream consumer with the
// server's default 30 s AckWait runs once (the worker's default progress
// heartbeat), next to 1,000 short tasks, none lost or repeated.
func TestSDKNATSLongTaskRunsOnce(t *testing.T) {
	c := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	results := ns + "-results"
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	defer func() { _ = rdb.Close() }()
	stream := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(ns))
	js, cons := testenv.JetStreamQueue(ctx, t, env.NATSURL, stream, stream, jetstream.ConsumerConfig{}) // AckWait: server default
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &qv1.ScalerConfig{ObjectMeta: metav1.ObjectMeta{Name: "broker", Namespace: ns},
		Spec: qv1.ScalerConfigSpec{Type: qv1.BrokerNATS, Config: qv1.ScalerConnection{URL: env.NATSURL, Stream: stream}}}); err != nil {
		t.Fatal(err)
	}
	brokerEnv := []corev1.EnvVar{{Name: "NATS_URL", Value: env.NATSURL}, {Name: "REDIS_ADDR", Value: env.RedisAddr}}
	if err := c.Create(ctx, recoveryQWorker(t, ns, stream+"/workers", 1, 2, brokerEnv,
		"--broker", "nats", "--queue", stream+"/workers", "--task-time", "10ms", "--slow-prefix", "slow-", "--slow-time", "60s")); err != nil {
		t.Fatal(err)
	}
	bodies := append([]string{"slow-60s"}, taskBodies(recoveryTasks)...)
	for i, b := range bodies {
		if _, err := js.PublishAsync(stream+".task", []byte(b)); err != nil {
			t.Fatal(err)
		}
		if i%500 == 499 || i == len(bodies)-1 {
			<-js.PublishAsyncComplete()
		}
	}
	began := time.Now()
	waitFor(ctx, t, "every task done", func() (bool, error) {
		n, err := rdb.SCard(ctx, results+":swell:done").Result()
		return n == int64(len(bodies)), err
	})
	took := time.Since(began)
	// A redelivery at the first AckWait would finish its second run 60 s
	// later: wait past that before counting.
	if wait := time.Until(began.Add(info.Config.AckWait + 70*time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	lost, twice := countTasks(ctx, t, rdb, results, bodies)
	if lost != 0 || twice != 0 {
		t.Fatalf("%d of %d tasks lost, %d done twice (slow-60s: %s times); want 0 and 0",
			lost, len(bodies), twice, rdb.HGet(ctx, results+":swell:times", "slow-60s").Val())
	}
	left, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if left.NumPending+uint64(left.NumAckPending) != 0 {
		t.Fatalf("consumer: %d pending, %d unacked; want 0, 0", left.NumPending, left.NumAckPending)
	}
	t.Logf("AckWait %v: slow-60s ran once (counted %v after the start); %d tasks done in %v: 0 lost, 0 twice", info.Config.AckWait,
		time.Since(began).Round(time.Second), len(bodies), took.Round(time.Second))
}
