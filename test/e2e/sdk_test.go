package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
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
)

var (
	swellBinOnce sync.Once
	swellBin     string
	swellBinErr  error
)

// buildSwell builds the swell binary once per test run; worker pods on the
// process node run `swell demo-worker` from it.
func buildSwell(t *testing.T) string {
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

// TestSDKWorkersLoseNoTask runs real Go-SDK worker processes on the process
// node through scale-up, an exact scale-down, a rollout mid-stream and two
// SIGKILLed workers, then counts every task: none lost, duplicates only for
// tasks the killed workers held.
func TestSDKWorkersLoseNoTask(t *testing.T) {
	c := startController(t)
	bin := buildSwell(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	queue := ns + "-tasks"
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	defer func() { _ = rdb.Close() }()
	if err := c.Create(ctx, redisScalerConfig(ns, "redis", env.RedisAddr)); err != nil {
		t.Fatal(err)
	}
	retirements := watchRetirements(ctx, t, ns)
	qw := sdkQWorker(ns, "sdk", queue, bin, 8)
	if err := c.Create(ctx, qw); err != nil {
		t.Fatal(err)
	}

	const total = 10000
	enqueue(ctx, t, rdb, queue, total)
	waitForRunningPods(ctx, t, ns, "sdk", 8)
	waitProcessed(ctx, t, rdb, queue, 1500)

	// Scale down to 2: exactly 6 pods retire, never more.
	setMax(ctx, t, c, ns, "sdk", 2, nil)
	waitFor(ctx, t, "the pool to shrink to 2", func() (bool, error) {
		pods, err := alivePods(ctx, ns, "sdk")
		return err == nil && len(pods) == 2 && retirements.count() == 6, err
	})
	if n := retirements.count(); n != 6 {
		t.Fatalf("scale-down 8 → 2 retired %d pods, want exactly 6", n)
	}

	// Rollout mid-stream, with room for 4 pods.
	setMax(ctx, t, c, ns, "sdk", 4, func(q *qv1.QWorker) {
		q.Spec.PodSpec.Containers[0].Env = append(q.Spec.PodSpec.Containers[0].Env, corev1.EnvVar{Name: "ROLLOUT", Value: "2"})
	})
	var newHash string
	waitFor(ctx, t, "every running pod on the new spec hash", func() (bool, error) {
		got := getQWorker(ctx, t, c, ns, "sdk")
		newHash = got.Status.CurrentPodSpecHash
		pods, err := alivePods(ctx, ns, "sdk")
		if err != nil || len(pods) != 4 {
			return false, err
		}
		for _, p := range pods {
			if p.Labels[qworker.LabelPodSpecHash] != newHash[:63] || p.Status.Phase != corev1.PodRunning {
				return false, nil
			}
		}
		return true, nil
	})

	// SIGKILL two workers mid-task: their containers restart, and the
	// tasks they held go back to the queue.
	killed := killWorkers(ctx, t, ns, "sdk", 2)

	waitFor(ctx, t, "every task processed", func() (bool, error) {
		n, err := rdb.SCard(ctx, queue+":swell:done").Result()
		return n == total, err
	})
	dups := duplicates(ctx, t, rdb, queue)
	if dups > killed {
		t.Fatalf("%d tasks were processed twice, more than the %d held by SIGKILLed workers", dups, killed)
	}
	if n := rdb.LLen(ctx, queue).Val(); n != 0 {
		t.Fatalf("%d tasks left in the queue", n)
	}
	t.Logf("10,000 tasks: 0 lost, %d processed twice (SIGKILLed workers held at most %d), %d pods retired so far (scale-down, rollout, drain)",
		dups, killed, retirements.count())
}

func sdkQWorker(ns, name, queue, bin string, maxR int32) *qv1.QWorker {
	return &qv1.QWorker{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: qv1.QWorkerSpec{
			PodSpec: corev1.PodSpec{
				NodeSelector:                  map[string]string{procnode.Label: "true"},
				Tolerations:                   []corev1.Toleration{{Key: procnode.Taint, Operator: corev1.TolerationOpExists}},
				TerminationGracePeriodSeconds: ptr.To[int64](10),
				Containers: []corev1.Container{{
					Name: "worker", Image: "swell-demo-worker",
					Command: []string{bin, "demo-worker", "--redis", env.RedisAddr, "--queue", queue, "--task-time", "15ms"},
					Env: []corev1.EnvVar{{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{
						FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}},
				}},
			},
			ScaleConfig: qv1.ScaleConfig{
				ScalerConfigRef: "redis", Queue: queue, MinReplicas: 1, MaxReplicas: maxR, ScalingFactor: 0.01,
				PollingIntervalSeconds: ptr.To[int32](1),
				Retirement:             &qv1.Retirement{Mode: qv1.RetirementCooperative, MaxSurge: ptr.To[int32](2)},
			},
		},
	}
}

func enqueue(ctx context.Context, t *testing.T, rdb *redis.Client, queue string, n int) {
	t.Helper()
	batch := make([]any, 0, 500)
	for i := range n {
		batch = append(batch, fmt.Sprintf("task-%05d", i))
		if len(batch) == cap(batch) || i == n-1 {
			if err := rdb.LPush(ctx, queue, batch...).Err(); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

func waitProcessed(ctx context.Context, t *testing.T, rdb *redis.Client, queue string, n int64) {
	t.Helper()
	waitFor(ctx, t, fmt.Sprintf("%d tasks processed", n), func() (bool, error) {
		got, err := rdb.SCard(ctx, queue+":swell:done").Result()
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

// killWorkers SIGKILLs n running worker processes (from their container
// IDs, process://<pid>) and returns how many it killed.
func killWorkers(ctx context.Context, t *testing.T, ns, name string, n int) int {
	t.Helper()
	pods, err := alivePods(ctx, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, p := range pods {
		if killed == n {
			break
		}
		if len(p.Status.ContainerStatuses) == 0 {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "process://"))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			killed++
		}
	}
	if killed != n {
		t.Fatalf("killed %d workers, want %d", killed, n)
	}
	return killed
}

// duplicates counts tasks the workers finished more than once.
func duplicates(ctx context.Context, t *testing.T, rdb *redis.Client, queue string) int {
	t.Helper()
	times, err := rdb.HGetAll(ctx, queue+":swell:times").Result()
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
