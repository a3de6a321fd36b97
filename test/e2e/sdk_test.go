package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/controller/qworker"
	"github.com/swell-autoscaler/swell/internal/procnode"
	"github.com/swell-autoscaler/swell/sdk/go/queue/redisq"
)

var (
	swellBinOnce sync.Once
	swellBin     string
	swellBinErr  error
)

// buildSwell builds the swell binary once per test run; worker pods on the
// process node run `swell demo-worker` from it.
func buildSwell(t testing.TB) string {
	t.Helper()
	swellBinOnce.Do(func() {
		swellBin = filepath.Join(env.Dir, "swell")
		if out, err := exec.Command("go", "build", "-o", swellBin, "../../cmd/swell").CombinedOutput(); err != nil {
			swellBinErr = fmt.Errorf("build swell: %w\n%s", err, out)
		}
	})
	if swellBinErr != nil {
		t.Fatal(swellBinErr)
	}
	return swellBin
}

// retirementLog records, from a pod watch, every pod the controller marked
// for retirement, so the test can check no scale-down retired more than asked.
type retirementLog struct {
	mu      sync.Mutex
	retired map[string]bool
}

func (l *retirementLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.retired)
}

func watchRetirements(ctx context.Context, t *testing.T, ns string) *retirementLog {
	w, err := env.Clientset.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l := &retirementLog{retired: map[string]bool{}}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			if pod.Annotations[qworker.AnnotationRetire] == "true" {
				l.mu.Lock()
				l.retired[pod.Name] = true
				l.mu.Unlock()
			}
		}
	}()
	return l
}

// sdkBroker is a broker's side of the SDK scenario, prepared in the test's
// namespace: the ScalerConfig the QWorker scales on, the queue, how to fill
// it, and how to read what is left.
type sdkBroker struct {
	// name is the broker, for logs.
	name string
	// scalerConfig is the spec of the ScalerConfig the QWorker references.
	scalerConfig qv1.ScalerConfigSpec
	// queue is the QWorker's queue (for NATS "STREAM/consumer").
	queue string
	// enqueue puts tasks with the given unique bodies on the queue.
	enqueue func(ctx context.Context, t *testing.T, bodies []string)
	// left counts tasks the broker still holds (queued or unacknowledged);
	// the scenario waits for 0 once every task was processed.
	left func(ctx context.Context) (int64, error)
	// env is how any worker program reaches the broker (REDIS_ADDR,
	// RABBITMQ_URL, NATS_URL, KAFKA_BROKERS), kept out of command lines.
	env []corev1.EnvVar
	// demoArgs are the `swell demo-worker` flags that consume this broker's
	// queue.
	demoArgs []string
}

// sdkCase is one run of the SDK scenario: a broker and a worker program.
// The worker records each task it finished in Redis (env.RedisAddr): it
// adds the body to the set <results>:swell:done, increments the body's
// field in the hash <results>:swell:times and its pod's field in the hash
// <results>:swell:pods.
type sdkCase struct {
	// name names the subtest (and so its namespace), e.g. the broker.
	name string
	// broker prepares the broker's queue in namespace ns.
	broker func(ctx context.Context, t *testing.T, ns string) sdkBroker
	// worker returns the worker container's command and env beyond the
	// broker's (sdkBroker.env, which the container gets too).
	worker func(t *testing.T, b sdkBroker, results string) ([]string, []corev1.EnvVar)
}

// sdkTasks is how many tasks each scenario run enqueues.
const sdkTasks = 10000

// TestSDKWorkersLoseNoTask runs real Go-SDK worker processes (`swell
// demo-worker`) on the process node for each broker, through the scenario
// of runSDKScenario.
//
// Kafka runs twice: on KIP-848's consumer group protocol and on the
// classic one (kafkaq's default). The worker logs carry franz-go's group
// events (KAFKA_LOG_LEVEL=info), kept with the environment's logs when a
// run fails.
func TestSDKWorkersLoseNoTask(t *testing.T) {
	for _, b := range []struct {
		name   string
		broker func(context.Context, *testing.T, string) sdkBroker
	}{
		{"redis", redisSDKBroker}, {"rabbitmq", rabbitSDKBroker}, {"nats", natsSDKBroker},
		{"kafka", kafkaSDKBroker}, {"kafka-classic", kafkaClassicSDKBroker},
	} {
		runSDKScenario(t, sdkCase{name: b.name, broker: b.broker, worker: goDemoWorker})
	}
}

// goDemoWorker runs `swell demo-worker` on broker b with 15 ms tasks.
func goDemoWorker(t *testing.T, b sdkBroker, results string) ([]string, []corev1.EnvVar) {
	cmd := append([]string{buildSwell(t), "demo-worker", "--redis", env.RedisAddr, "--results", results, "--task-time", "15ms"}, b.demoArgs...)
	return cmd, nil
}

// runSDKScenario runs real worker processes on the process node, as the
// subtest sc.name, through scale-up to 8, an exact scale-down
// 8 → 1, a rollout mid-stream and two SIGKILLed workers, then counts every
// task: none lost, duplicates only for tasks the killed workers held, and
// every pod on the new spec hash.
func runSDKScenario(t *testing.T, sc sdkCase) {
	c := startController(t)
	t.Run(sc.name, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		defer cancel()
		ns := newNamespace(ctx, t)
		sdkScenario(ctx, t, c, ns, sc.broker(ctx, t, ns), sc.worker)
	})
}

func sdkScenario(ctx context.Context, t *testing.T, c client.Client, ns string, b sdkBroker,
	worker func(*testing.T, sdkBroker, string) ([]string, []corev1.EnvVar)) {
	results := ns + "-results"
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	defer func() { _ = rdb.Close() }()
	if err := c.Create(ctx, &qv1.ScalerConfig{ObjectMeta: metav1.ObjectMeta{Name: "broker", Namespace: ns}, Spec: b.scalerConfig}); err != nil {
		t.Fatalf("create ScalerConfig: %v", err)
	}
	retirements := watchRetirements(ctx, t, ns)
	cmd, extraEnv := worker(t, b, results)
	extraEnv = append(slices.Clone(b.env), extraEnv...)
	if err := c.Create(ctx, sdkQWorker(ns, "sdk", b.queue, cmd, extraEnv, 8)); err != nil {
		t.Fatal(err)
	}

	b.enqueue(ctx, t, taskBodies(sdkTasks))
	waitForRunningPods(ctx, t, ns, "sdk", 8)
	waitProcessed(ctx, t, rdb, results, 1500)

	// Scale down to 1: exactly 7 pods retire, never more.
	setMax(ctx, t, c, ns, "sdk", 1, nil)
	waitFor(ctx, t, "the pool to shrink to 1", func() (bool, error) {
		pods, err := alivePods(ctx, ns, "sdk")
		return err == nil && len(pods) == 1 && retirements.count() == 7, err
	})
	if n := retirements.count(); n != 7 {
		t.Fatalf("scale-down 8 → 1 retired %d pods, want exactly 7", n)
	}

	// Rollout mid-stream, with room for 4 pods.
	setMax(ctx, t, c, ns, "sdk", 4, func(q *qv1.QWorker) {
		q.Spec.PodSpec.Containers[0].Env = append(q.Spec.PodSpec.Containers[0].Env, corev1.EnvVar{Name: "ROLLOUT", Value: "2"})
	})
	waitAllOnNewHash(ctx, t, c, ns, "sdk", 4)

	// SIGKILL two workers mid-task: their containers restart, and the
	// tasks they held go back to the queue.
	killed := killWorkers(ctx, t, rdb, results, ns, "sdk", 2)

	waitFor(ctx, t, "every task processed", func() (bool, error) {
		n, err := rdb.SCard(ctx, results+":swell:done").Result()
		return n == sdkTasks, err
	})
	waitFor(ctx, t, "the broker to hold no task", func() (bool, error) {
		n, err := b.left(ctx)
		return n == 0, err
	})
	dups := duplicates(ctx, t, rdb, results)
	if dups > killed {
		t.Fatalf("%d tasks were processed twice, more than the %d held by SIGKILLed workers", dups, killed)
	}
	t.Logf("%s: %d tasks, 0 lost, %d processed twice (SIGKILLed workers held at most %d), scale-down 8 → 1 retired exactly 7; %d pods retired in all (scale-down, rollout, drain)",
		b.name, sdkTasks, dups, killed, retirements.count())
}

// waitAllOnNewHash waits until want pods run, all on the QWorker's current
// spec hash.
func waitAllOnNewHash(ctx context.Context, t *testing.T, c client.Client, ns, name string, want int) {
	t.Helper()
	waitFor(ctx, t, "every running pod on the new spec hash", func() (bool, error) {
		hash := getQWorker(ctx, t, c, ns, name).Status.CurrentPodSpecHash
		pods, err := alivePods(ctx, ns, name)
		if err != nil || len(pods) != want || len(hash) < 63 {
			return false, err
		}
		for _, p := range pods {
			if p.Labels[qworker.LabelPodSpecHash] != hash[:63] || p.Status.Phase != corev1.PodRunning {
				return false, nil
			}
		}
		return true, nil
	})
}

// redisSDKBroker is a Redis list that QScaler producers fill with LPUSH.
func redisSDKBroker(ctx context.Context, t *testing.T, ns string) sdkBroker {
	queue := ns + "-tasks"
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	return sdkBroker{
		name:         "redis",
		scalerConfig: redisScalerConfig(ns, "broker", env.RedisAddr).Spec,
		queue:        queue,
		enqueue: func(ctx context.Context, t *testing.T, bodies []string) {
			lpush(ctx, t, rdb, queue, bodies)
		},
		left: func(ctx context.Context) (int64, error) {
			n, err := rdb.LLen(ctx, queue).Result()
			if err != nil {
				return 0, err
			}
			held, err := rdb.Keys(ctx, redisq.ProcessingKey(queue, "*")).Result()
			for _, k := range held {
				n += rdb.LLen(ctx, k).Val()
			}
			return n, err
		},
		env:      []corev1.EnvVar{{Name: "REDIS_ADDR", Value: env.RedisAddr}},
		demoArgs: []string{"--queue", queue},
	}
}

func sdkQWorker(ns, name, queue string, command []string, extraEnv []corev1.EnvVar, maxR int32) *qv1.QWorker {
	podEnv := append([]corev1.EnvVar{{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}, extraEnv...)
	return &qv1.QWorker{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: qv1.QWorkerSpec{
			PodSpec: corev1.PodSpec{
				NodeSelector:                  map[string]string{procnode.Label: "true"},
				Tolerations:                   []corev1.Toleration{{Key: procnode.Taint, Operator: corev1.TolerationOpExists}},
				TerminationGracePeriodSeconds: ptr.To[int64](10),
				Containers: []corev1.Container{{
					Name: "worker", Image: "swell-sdk-worker", Command: command, Env: podEnv,
				}},
			},
			ScaleConfig: qv1.ScaleConfig{
				ScalerConfigRef: "broker", Queue: queue, MinReplicas: 1, MaxReplicas: maxR, ScalingFactor: 0.01,
				PollingIntervalSeconds: ptr.To[int32](1),
				Retirement:             &qv1.Retirement{Mode: qv1.RetirementCooperative, MaxSurge: ptr.To[int32](2)},
			},
		},
	}
}

// taskBodies returns n unique task bodies, task-00000 onwards.
func taskBodies(n int) []string {
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = fmt.Sprintf("task-%05d", i)
	}
	return bodies
}

// enqueue LPUSHes n unique tasks onto a Redis list, as QScaler producers do.
func enqueue(ctx context.Context, t *testing.T, rdb *redis.Client, queue string, n int) {
	t.Helper()
	lpush(ctx, t, rdb, queue, taskBodies(n))
}

// lpush LPUSHes bodies onto queue in batches.
func lpush(ctx context.Context, t *testing.T, rdb *redis.Client, queue string, bodies []string) {
	t.Helper()
	for len(bodies) > 0 {
		batch := make([]any, 0, 500)
		for len(batch) < cap(batch) && len(bodies) > 0 {
			batch = append(batch, bodies[0])
			bodies = bodies[1:]
		}
		if err := rdb.LPush(ctx, queue, batch...).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func waitProcessed(ctx context.Context, t *testing.T, rdb *redis.Client, results string, n int64) {
	t.Helper()
	waitFor(ctx, t, fmt.Sprintf("%d tasks processed", n), func() (bool, error) {
		got, err := rdb.SCard(ctx, results+":swell:done").Result()
		return got >= n, err
	})
}

// setMax changes maxReplicas (and optionally more) with conflict retries.
func setMax(ctx context.Context, t *testing.T, c client.Client, ns, name string, maxR int32, more func(*qv1.QWorker)) {
	t.Helper()
	waitFor(ctx, t, "the QWorker update", func() (bool, error) {
		q := getQWorker(ctx, t, c, ns, name)
		q.Spec.ScaleConfig.MaxReplicas = maxR
		if q.Spec.ScaleConfig.MinReplicas > maxR {
			q.Spec.ScaleConfig.MinReplicas = maxR
		}
		if more != nil {
			more(q)
		}
		return c.Update(ctx, q) == nil, nil
	})
}

// killWorkers SIGKILLs n running worker processes that are busy (each has
// finished a task since the rollout, per <results>:swell:pods), from their
// container IDs (process://<pid>), and returns n.
//
// Waiting for busy workers makes the kill land mid-stream, where a task is
// in hand, rather than in a worker's first seconds. It also keeps the
// Kafka runs clear of a kfake fault: a member SIGKILLed while its first
// JoinGroup is parked is never expired from kfake's classic group, which
// then stalls (docs/qworker.md).
func killWorkers(ctx context.Context, t *testing.T, rdb *redis.Client, results, ns, name string, n int) int {
	t.Helper()
	var busy []corev1.Pod
	waitFor(ctx, t, fmt.Sprintf("%d busy workers to kill", n), func() (bool, error) {
		pods, err := alivePods(ctx, ns, name)
		if err != nil {
			return false, err
		}
		done, err := rdb.HGetAll(ctx, results+":swell:pods").Result()
		if err != nil {
			return false, err
		}
		busy = busy[:0]
		for _, p := range pods {
			if done[p.Name] != "" && len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].RestartCount == 0 {
				busy = append(busy, p)
			}
		}
		return len(busy) >= n, nil
	})
	for _, p := range busy[:n] {
		pid, err := strconv.Atoi(strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "process://"))
		if err != nil || pid <= 0 {
			t.Fatalf("pod %s has no process ID in %q", p.Name, p.Status.ContainerStatuses[0].ContainerID)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("SIGKILL pod %s (pid %d): %v", p.Name, pid, err)
		}
	}
	return n
}

// duplicates counts tasks the workers finished more than once.
func duplicates(ctx context.Context, t *testing.T, rdb *redis.Client, results string) int {
	t.Helper()
	times, err := rdb.HGetAll(ctx, results+":swell:times").Result()
	if err != nil {
		t.Fatal(err)
	}
	dups := 0
	for _, v := range times {
		if v != "1" {
			dups++
		}
	}
	return dups
}
