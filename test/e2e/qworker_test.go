package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/controller/qworker"
	"github.com/swell-autoscaler/swell/internal/procnode"
)

// redisFixture is what most QWorker tests start from: the controller, a
// fresh namespace, a Redis client, a queue name and a ScalerConfig "redis".
func redisFixture(t *testing.T, timeout time.Duration) (context.Context, client.Client, string, *redis.Client, string) {
	t.Helper()
	c := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	ns := newNamespace(ctx, t)
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := c.Create(ctx, redisScalerConfig(ns, "redis", env.RedisAddr)); err != nil {
		t.Fatalf("create ScalerConfig: %v", err)
	}
	return ctx, c, ns, rdb, ns + "-tasks"
}

// sourceHealthy waits for the QWorker's SourceHealthy condition to be want.
func sourceHealthy(ctx context.Context, t *testing.T, c client.Client, ns, name string, want metav1.ConditionStatus) {
	t.Helper()
	waitFor(ctx, t, "SourceHealthy="+string(want)+" on "+name, func() (bool, error) {
		got := getQWorker(ctx, t, c, ns, name)
		cond := meta.FindStatusCondition(got.Status.Conditions, qworker.ConditionSourceHealthy)
		return cond != nil && cond.Status == want, nil
	})
}

// redisScalerConfig points a ScalerConfig at the shared environment's Redis.
func redisScalerConfig(ns, name, addr string) *qv1.ScalerConfig {
	host, port, _ := strings.Cut(addr, ":")
	return &qv1.ScalerConfig{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       qv1.ScalerConfigSpec{Type: qv1.BrokerRedis, Config: qv1.ScalerConnection{Host: host, Port: port}},
	}
}

// kwokQWorker is a QWorker whose pods land on kwok nodes (they turn Running
// without running anything) and retire by deletion.
func kwokQWorker(ns, name, queue string, minR, maxR int32, factor float64) *qv1.QWorker {
	return &qv1.QWorker{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: qv1.QWorkerSpec{
			PodSpec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "registry.invalid/worker:1"}}},
			ScaleConfig: qv1.ScaleConfig{
				ScalerConfigRef: "redis", Queue: queue, MinReplicas: minR, MaxReplicas: maxR, ScalingFactor: factor,
				PollingIntervalSeconds: ptr.To[int32](1),
				Retirement:             &qv1.Retirement{Mode: qv1.RetirementDelete},
			},
		},
	}
}

// alivePods lists a QWorker's pods that are not finished or terminating.
func alivePods(ctx context.Context, ns, qw string) ([]corev1.Pod, error) {
	pods, err := env.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: qworker.LabelQWorker + "=" + qw})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			out = append(out, p)
		}
	}
	return out, nil
}

func waitForRunningPods(ctx context.Context, t *testing.T, ns, qw string, want int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	waitFor(ctx, t, fmt.Sprintf("%d running pods of %s", want, qw), func() (bool, error) {
		all, err := alivePods(ctx, ns, qw)
		if err != nil {
			return false, err
		}
		pods = pods[:0]
		for _, p := range all {
			if p.Status.Phase == corev1.PodRunning {
				pods = append(pods, p)
			}
		}
		return len(all) == want && len(pods) == want, nil
	})
	return pods
}

func getQWorker(ctx context.Context, t *testing.T, c client.Client, ns, name string) *qv1.QWorker {
	t.Helper()
	qw := &qv1.QWorker{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, qw); err != nil {
		t.Fatalf("get QWorker: %v", err)
	}
	return qw
}

func TestQWorkerScalesOnRedisBacklog(t *testing.T) {
	ctx, c, ns, rdb, queue := redisFixture(t, 3*time.Minute)
	qw := kwokQWorker(ns, "workers", queue, 0, 8, 0.25)
	if err := c.Create(ctx, qw); err != nil {
		t.Fatalf("create QWorker: %v", err)
	}

	// Empty queue, min 0: no pods.
	waitFor(ctx, t, "the first decision", func() (bool, error) {
		got := getQWorker(ctx, t, c, ns, "workers")
		return got.Status.ObservedGeneration == got.Generation && got.Status.CurrentPodSpecHash != "", nil
	})
	if pods, _ := alivePods(ctx, ns, "workers"); len(pods) != 0 {
		t.Fatalf("%d pods with an empty queue and minReplicas 0", len(pods))
	}

	// 10 messages × 0.25 = 2.5 → 3 pods.
	for i := range 10 {
		rdb.LPush(ctx, queue, fmt.Sprintf("t%d", i))
	}
	pods := waitForRunningPods(ctx, t, ns, "workers", 3)
	hash := getQWorker(ctx, t, c, ns, "workers").Status.CurrentPodSpecHash
	for _, p := range pods {
		assertWorkerPod(t, p, "workers", hash)
	}

	// 100 messages → 25, capped at maxReplicas 8.
	for i := range 90 {
		rdb.LPush(ctx, queue, fmt.Sprintf("u%d", i))
	}
	waitForRunningPods(ctx, t, ns, "workers", 8)
	// The pool can reach 8 on a measurement taken mid-push (60 × 0.25 is
	// already past the cap); the next poll shows the whole backlog.
	waitFor(ctx, t, "status backlog 100, desired 8", func() (bool, error) {
		got := getQWorker(ctx, t, c, ns, "workers")
		return got.Status.Backlog != nil && *got.Status.Backlog == 100 && got.Status.DesiredReplicas == 8, nil
	})

	// Drained: back to zero.
	rdb.Del(ctx, queue)
	waitForRunningPods(ctx, t, ns, "workers", 0)

	// And from zero on the first message.
	rdb.LPush(ctx, queue, "again")
	waitForRunningPods(ctx, t, ns, "workers", 1)
	assertEvent(ctx, t, ns, "workers", "ScaledUp")
	assertEvent(ctx, t, ns, "workers", "ScaledDown")
}

func TestQWorkerRollsOutPodSpecChange(t *testing.T) {
	ctx, c, ns, _, queue := redisFixture(t, 3*time.Minute)
	qw := kwokQWorker(ns, "roll", queue, 4, 4, 1)
	qw.Spec.ScaleConfig.Retirement.MaxSurge = ptr.To[int32](1)
	if err := c.Create(ctx, qw); err != nil {
		t.Fatal(err)
	}
	before := waitForRunningPods(ctx, t, ns, "roll", 4)
	oldHash := getQWorker(ctx, t, c, ns, "roll").Status.CurrentPodSpecHash

	// A status write may land between the read and the update: retry on
	// conflict, as any client of a controller-owned object must.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := getQWorker(ctx, t, c, ns, "roll")
		cur.Spec.PodSpec.Containers[0].Image = "registry.invalid/worker:2"
		return c.Update(ctx, cur)
	}); err != nil {
		t.Fatalf("update podSpec: %v", err)
	}
	maxAlive := 0
	waitFor(ctx, t, "every pod replaced by one with the new hash", func() (bool, error) {
		got := getQWorker(ctx, t, c, ns, "roll")
		if got.Status.CurrentPodSpecHash == oldHash {
			return false, nil
		}
		pods, err := alivePods(ctx, ns, "roll")
		if err != nil {
			return false, err
		}
		maxAlive = max(maxAlive, len(pods))
		if len(pods) != 4 {
			return false, nil
		}
		for _, p := range pods {
			if p.Labels[qworker.LabelPodSpecHash] != got.Status.CurrentPodSpecHash[:63] || p.Status.Phase != corev1.PodRunning {
				return false, nil
			}
			for _, old := range before {
				if p.Name == old.Name {
					return false, nil
				}
			}
		}
		return true, nil
	})
	if maxAlive > 5 {
		t.Fatalf("rollout ran %d pods at once, more than 4 + maxSurge 1", maxAlive)
	}
}

func TestQWorkerHoldsWhenBrokerFails(t *testing.T) {
	ctx, c, ns, rdb, queue := redisFixture(t, 3*time.Minute)
	// A second QWorker whose ScalerConfig points at a dead port: it must
	// not slow down or disturb the healthy one.
	if err := c.Create(ctx, redisScalerConfig(ns, "dead", "127.0.0.1:1")); err != nil {
		t.Fatal(err)
	}
	broken := kwokQWorker(ns, "broken", "q", 2, 5, 1)
	broken.Spec.ScaleConfig.ScalerConfigRef = "dead"
	if err := c.Create(ctx, broken); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, kwokQWorker(ns, "healthy", queue, 0, 5, 1)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		rdb.LPush(ctx, queue, fmt.Sprintf("t%d", i))
	}
	waitForRunningPods(ctx, t, ns, "healthy", 3)
	sourceHealthy(ctx, t, c, ns, "broken", metav1.ConditionFalse)
	// The broken QWorker never measured: it holds its floor (minReplicas 2),
	// it does not drop to zero.
	waitForRunningPods(ctx, t, ns, "broken", 2)
	assertEvent(ctx, t, ns, "broken", "SourceFailed")
	sc := &qv1.ScalerConfig{}
	waitFor(ctx, t, "ScalerConfig dead reported unhealthy", func() (bool, error) {
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "dead"}, sc); err != nil {
			return false, err
		}
		return !sc.Status.Healthy && sc.Status.Message != "", nil
	})

	// Now the real broker goes down under the healthy QWorker.
	if err := env.StopComponent("redis"); err != nil {
		t.Fatal(err)
	}
	sourceHealthy(ctx, t, c, ns, "healthy", metav1.ConditionFalse)
	time.Sleep(3 * time.Second) // several polls at 1 s while the broker is down
	if pods, _ := alivePods(ctx, ns, "healthy"); len(pods) != 3 {
		t.Fatalf("%d pods while the broker was down, want the 3 held", len(pods))
	}
	if err := env.RestartComponent(ctx, "redis", env.RedisReady()); err != nil {
		t.Fatal(err)
	}
	// Redis restarted empty (no persistence): the backlog is 0 → scale to 0.
	waitForRunningPods(ctx, t, ns, "healthy", 0)
	sourceHealthy(ctx, t, c, ns, "healthy", metav1.ConditionTrue)
}

func TestQWorkerDeletedTakesItsPods(t *testing.T) {
	c := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	if err := c.Create(ctx, redisScalerConfig(ns, "redis", env.RedisAddr)); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, kwokQWorker(ns, "gone", ns+"-q", 2, 2, 1)); err != nil {
		t.Fatal(err)
	}
	waitForRunningPods(ctx, t, ns, "gone", 2)
	if err := c.Delete(ctx, &qv1.QWorker{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gone"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the garbage collector to remove the pods", func() (bool, error) {
		pods, err := env.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: qworker.LabelQWorker + "=gone"})
		return err == nil && len(pods.Items) == 0, err
	})
}

func assertWorkerPod(t *testing.T, p corev1.Pod, qw, hash string) {
	t.Helper()
	ref := metav1.GetControllerOf(&p)
	if ref == nil || ref.Kind != "QWorker" || ref.Name != qw {
		t.Fatalf("pod %s controller %v, want QWorker %s", p.Name, ref, qw)
	}
	if !strings.HasPrefix(p.Name, qw+"-") {
		t.Fatalf("pod name %s, want prefix %s-", p.Name, qw)
	}
	env := map[string]string{}
	for _, e := range p.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if env["QWORKER_NAME"] != qw || env["POD_SPEC_HASH"] != hash || env["PULLING_INTERVAL"] == "" {
		t.Fatalf("pod %s env %v: want QWORKER_NAME=%s POD_SPEC_HASH=%s PULLING_INTERVAL set", p.Name, env, qw, hash)
	}
}

// assertEvent waits for an event of reason on the named object.
func assertEvent(ctx context.Context, t *testing.T, ns, name, reason string) {
	t.Helper()
	waitFor(ctx, t, "event "+reason+" on "+name, func() (bool, error) {
		evs, err := env.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == name && e.Reason == reason {
				return true, nil
			}
		}
		return false, nil
	})
}

// redisPushFixture is a namespace, a Redis client (closed with the test)
// and a queue name in it, and a ScalerConfig "redis" on the suite's Redis
// with keyspace notifications on, so pushes wake the QWorkers that use it.
func redisPushFixture(ctx context.Context, t *testing.T, c client.Client) (ns string, rdb *redis.Client, queue string) {
	t.Helper()
	ns = newNamespace(ctx, t)
	rdb = redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	sc := redisScalerConfig(ns, "redis", env.RedisAddr)
	sc.Spec.Config.KeyspaceNotifications = true
	if err := c.Create(ctx, sc); err != nil {
		t.Fatal(err)
	}
	return ns, rdb, ns + "-tasks"
}

// TestQWorkerReactsToRedisPush polls only once an hour, so a pod appearing
// after an LPUSH can only come from the keyspace-notification push.
func TestQWorkerReactsToRedisPush(t *testing.T) {
	c := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns, rdb, queue := redisPushFixture(ctx, t, c)
	qw := kwokQWorker(ns, "pushed", queue, 0, 5, 1)
	qw.Spec.ScaleConfig.PollingIntervalSeconds = ptr.To[int32](3600)
	if err := c.Create(ctx, qw); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the first decision", func() (bool, error) {
		got := getQWorker(ctx, t, c, ns, "pushed")
		return got.Status.ObservedGeneration == got.Generation && got.Status.CurrentPodSpecHash != "", nil
	})
	// Let the status write settle so no reconcile is pending, then push.
	time.Sleep(2 * time.Second)
	rdb.LPush(ctx, queue, "a", "b")
	waitForRunningPods(ctx, t, ns, "pushed", 2)
}

// TestQWorkerRecordsPeakUsageWithVPA runs a busy worker process on the
// process node and expects its peak CPU and memory, read from the real
// metrics.k8s.io API (metrics-server scraping the process node), in
// status.maxContainerResourcesUsage.
func TestQWorkerRecordsPeakUsageWithVPA(t *testing.T) {
	ctx, c, ns, _, queue := redisFixture(t, 3*time.Minute)
	qw := &qv1.QWorker{
		ObjectMeta: metav1.ObjectMeta{Name: "vpa", Namespace: ns},
		Spec: qv1.QWorkerSpec{
			PodSpec: corev1.PodSpec{
				NodeSelector: map[string]string{procnode.Label: "true"},
				Tolerations:  []corev1.Toleration{{Key: procnode.Taint, Operator: corev1.TolerationOpExists}},
				Containers: []corev1.Container{
					{Name: "busy", Image: "local", Command: []string{"/bin/sh", "-c", "while :; do :; done"}},
					{Name: "idle", Image: "local", Command: []string{"sleep", "600"}},
				},
			},
			ScaleConfig: qv1.ScaleConfig{ScalerConfigRef: "redis", Queue: queue, MinReplicas: 1, MaxReplicas: 1, ScalingFactor: 1,
				ActivateVPA: true, PollingIntervalSeconds: ptr.To[int32](2), Retirement: &qv1.Retirement{Mode: qv1.RetirementDelete}},
		},
	}
	if err := c.Create(ctx, qw); err != nil {
		t.Fatal(err)
	}
	var peaks []corev1.ResourceList
	waitFor(ctx, t, "peak usage of both containers in the status", func() (bool, error) {
		peaks = getQWorker(ctx, t, c, ns, "vpa").Status.MaxContainerResourcesUsage
		if len(peaks) != 2 {
			return false, nil
		}
		busyCPU, busyMem := peaks[0][corev1.ResourceCPU], peaks[0][corev1.ResourceMemory]
		return !busyCPU.IsZero() && !busyMem.IsZero(), nil
	})
	busy, idle := peaks[0][corev1.ResourceCPU], peaks[1][corev1.ResourceCPU]
	if busy.Cmp(idle) <= 0 {
		t.Fatalf("busy container peak CPU %s is not above the idle one's %s", busy.String(), idle.String())
	}
	got := getQWorker(ctx, t, c, ns, "vpa")
	if cond := meta.FindStatusCondition(got.Status.Conditions, qworker.ConditionMetricsAvailable); cond == nil || cond.Status != metav1.ConditionTrue {
		t.Fatalf("MetricsAvailable condition %v, want True", cond)
	}
}
