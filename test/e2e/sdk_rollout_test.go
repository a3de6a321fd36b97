package e2e

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/controller/qworker"
)

// capacityLog follows a QWorker's pods from a watch and, on every event,
// counts its workers, keeping the extremes seen.
//
// A worker is alive while its pod is owned by the QWorker, not terminating
// and not finished: a Swell SDK worker that leaves drops its owner
// reference, then deletes its pod. It is ready while alive with the pod's
// Ready condition true. The test's QWorkers gate readiness on the SDK's
// condition swell.dev/taking-tasks (spec.readinessGates): the process node,
// as kubelet, sets Ready only once the container runs and that condition
// is True, which the worker sets once its queue consumer is connected.
type capacityLog struct {
	mu     sync.Mutex
	pods   map[types.UID]*corev1.Pod
	events int
	// low holds the fewest ready, unmarked and serving workers seen; high
	// the most alive workers and live pods seen.
	low, high capacity
	// served reads which pods finished a task (the workers' record in
	// <results>:swell:pods), at each event.
	served  func() (map[string]string, error)
	servErr error
	// closed is set if the watch ended before stop.
	closed bool

	cancel context.CancelFunc
	done   chan struct{}
}

// capacity is one count of a QWorker's pods.
type capacity struct {
	// ready and alive are as capacityLog says.
	ready, alive int
	// unmarked are ready workers not marked for retirement: those take
	// tasks beyond the one in hand.
	unmarked int
	// serving are ready workers that finished a task: a worker sets its
	// readiness gate just before its first task, so a new pod is ready a
	// moment before it finished one.
	serving int
	// early are ready workers whose readiness gate condition is not True:
	// the node let a pod turn Ready before its worker took tasks.
	early int
	// live are pods neither terminating nor finished, owned or not: a
	// leaving worker counts here between dropping its owner reference and
	// deleting its pod.
	live int
}

// watchCapacity lists QWorker qw's pods in ns, then watches them from that
// list's resource version, so every change after the list is counted.
func watchCapacity(ctx context.Context, t *testing.T, ns, qw string, served func() (map[string]string, error)) *capacityLog {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: qworker.LabelQWorker + "=" + qw}
	list, err := env.Clientset.CoreV1().Pods(ns).List(ctx, sel)
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	sel.ResourceVersion = list.ResourceVersion
	w, err := env.Clientset.CoreV1().Pods(ns).Watch(wctx, sel)
	if err != nil {
		cancel()
		t.Fatalf("watch pods: %v", err)
	}
	l := &capacityLog{pods: map[types.UID]*corev1.Pod{}, served: served, cancel: cancel, done: make(chan struct{})}
	for i := range list.Items {
		l.pods[list.Items[i].UID] = &list.Items[i]
	}
	l.reset()
	go func() {
		defer close(l.done)
		defer w.Stop()
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			l.observe(ev.Type, pod)
		}
		l.mu.Lock()
		l.closed = wctx.Err() == nil
		l.mu.Unlock()
	}()
	return l
}

func (l *capacityLog) observe(typ watch.EventType, pod *corev1.Pod) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if typ == watch.Deleted {
		delete(l.pods, pod.UID)
	} else {
		l.pods[pod.UID] = pod
	}
	l.events++
	c := l.countLocked()
	l.low.ready = min(l.low.ready, c.ready)
	l.low.unmarked = min(l.low.unmarked, c.unmarked)
	l.low.serving = min(l.low.serving, c.serving)
	l.high.alive = max(l.high.alive, c.alive)
	l.high.live = max(l.high.live, c.live)
	l.high.early = max(l.high.early, c.early)
}

// countLocked counts the pods as they are now; callers hold l.mu.
func (l *capacityLog) countLocked() capacity {
	served, err := l.served()
	if err != nil && l.servErr == nil {
		l.servErr = err
	}
	var c capacity
	for _, p := range l.pods {
		if !podLive(p) {
			continue
		}
		c.live++
		if metav1.GetControllerOf(p) == nil {
			continue
		}
		c.alive++
		if !podIsReady(p) {
			continue
		}
		c.ready++
		if !podConditionTrue(p, qworker.ConditionTakingTasks) {
			c.early++
		}
		if p.Annotations[qworker.AnnotationRetire] != "true" {
			c.unmarked++
		}
		if served[p.Name] != "" {
			c.serving++
		}
	}
	return c
}

// settled reports whether exactly want workers are alive, all ready,
// serving and on the pod-spec hash label value hash.
func (l *capacityLog) settled(hash string, want int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.countLocked()
	if c.ready != want || c.alive != want || c.serving != want {
		return false
	}
	for _, p := range l.pods {
		if podLive(p) && metav1.GetControllerOf(p) != nil && p.Labels[qworker.LabelPodSpecHash] != hash {
			return false
		}
	}
	return true
}

// reset starts the extremes and the event count afresh from now.
func (l *capacityLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.low = l.countLocked()
	l.high = l.low
	l.events = 0
}

// stop ends the watch and returns the extremes it saw and its event count.
func (l *capacityLog) stop(t *testing.T) (low, high capacity, events int) {
	t.Helper()
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	l.cancel()
	<-l.done
	if closed {
		t.Fatal("the pod watch ended before the rollout did: events may be missing")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.servErr != nil {
		t.Fatalf("read which workers finished a task: %v", l.servErr)
	}
	return l.low, l.high, l.events
}

// podLive reports whether a pod is neither terminating nor finished.
func podLive(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// podIsReady reports the pod's Ready condition.
func podIsReady(p *corev1.Pod) bool {
	return podConditionTrue(p, corev1.PodReady)
}

// podConditionTrue reports whether the pod's condition t is True.
func podConditionTrue(p *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// feeder keeps a Redis list at least low tasks long, pushing unique bodies
// (taskBodies order) in batches, until stopped; the pool is then busy for
// as long as the feeder runs, however fast the workers are.
type feeder struct {
	pushed int
	err    error
	stopCh chan struct{}
	done   chan struct{}
}

func feed(ctx context.Context, rdb *redis.Client, queue string, low, batch int) *feeder {
	f := &feeder{stopCh: make(chan struct{}), done: make(chan struct{})}
	bodies := taskBodies(100000)
	go func() {
		defer close(f.done)
		for {
			n, err := rdb.LLen(ctx, queue).Result()
			if err != nil {
				f.err = err
				return
			}
			if int(n) < low && f.pushed+batch <= len(bodies) {
				next := make([]any, batch)
				for i := range next {
					next[i] = bodies[f.pushed+i]
				}
				if err := rdb.LPush(ctx, queue, next...).Err(); err != nil {
					f.err = err
					return
				}
				f.pushed += batch
			}
			select {
			case <-f.stopCh:
				return
			case <-ctx.Done():
				f.err = ctx.Err()
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return f
}

// stop ends the feeding and returns how many tasks were pushed.
func (f *feeder) stop(t *testing.T) int {
	t.Helper()
	close(f.stopCh)
	<-f.done
	if f.err != nil {
		t.Fatalf("feed the queue: %v", f.err)
	}
	return f.pushed
}

// TestSDKRolloutKeepsReadyCapacity rolls a pool of 4 real SDK workers (Go:
// `swell demo-worker`; Python: sdk/python/examples/worker.py) on the
// process node to a new podSpec while a Redis queue keeps them busy, with
// desired held at 4 (minReplicas = maxReplicas). A pod watch samples every
// event from before the change until every pod runs the new hash: ready
// workers never fall below desired − 1, alive workers never exceed
// desired + maxSurge. Then every task is done exactly once.
//
// The podSpec gates readiness on swell.dev/taking-tasks, which the SDKs
// set once their queue consumer is connected, so Ready (which the
// controller waits for before it retires an outdated pod) means the worker
// takes tasks, not that its process started: no pod is ever Ready without
// that condition. The test also counts, and logs, the ready workers that
// had finished a task at each event; without the gate a rollout ran ahead
// of workers still starting (their imports, watches and broker
// connection), and that count fell to 1 of 4 with Python workers.
func TestSDKRolloutKeepsReadyCapacity(t *testing.T) {
	c := startController(t)
	for _, tc := range []struct {
		name     string
		worker   func(*testing.T, sdkBroker, string) ([]string, []corev1.EnvVar)
		maxSurge int32
	}{
		{"go", goDemoWorker, 2},
		{"python", pythonWorker("redis"), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			const desired = 4
			ns := newNamespace(ctx, t)
			b := redisSDKBroker(ctx, t, ns)
			results := ns + "-results"
			rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
			defer func() { _ = rdb.Close() }()
			if err := c.Create(ctx, &qv1.ScalerConfig{ObjectMeta: metav1.ObjectMeta{Name: "broker", Namespace: ns}, Spec: b.scalerConfig}); err != nil {
				t.Fatalf("create ScalerConfig: %v", err)
			}
			cmd, extraEnv := tc.worker(t, b, results)
			qw := sdkQWorker(ns, "sdk", b.queue, cmd, append(slices.Clone(b.env), extraEnv...), desired)
			qw.Spec.PodSpec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: qworker.ConditionTakingTasks}}
			qw.Spec.ScaleConfig.MinReplicas = desired
			qw.Spec.ScaleConfig.Retirement.MaxSurge = ptr.To(tc.maxSurge)
			if err := c.Create(ctx, qw); err != nil {
				t.Fatal(err)
			}

			feeding := feed(ctx, rdb, b.queue, 800, 400)
			defer func() {
				if feeding != nil {
					feeding.stop(t)
				}
			}()
			waitForRunningPods(ctx, t, ns, "sdk", desired)
			waitProcessed(ctx, t, rdb, results, 200)

			pods := watchCapacity(ctx, t, ns, "sdk", func() (map[string]string, error) {
				return rdb.HGetAll(ctx, results+":swell:pods").Result()
			})
			offTarget := watchQWorker(ctx, t, ns, "sdk", func(d, _ int64) bool { return d != desired })
			oldHash := getQWorker(ctx, t, c, ns, "sdk").Status.CurrentPodSpecHash
			waitFor(ctx, t, "4 ready workers before the change", func() (bool, error) {
				return pods.settled(oldHash[:63], desired), nil
			})
			pods.reset()
			doneBefore := rdb.SCard(ctx, results+":swell:done").Val()
			setMax(ctx, t, c, ns, "sdk", desired, func(q *qv1.QWorker) {
				q.Spec.PodSpec.Containers[0].Env = append(q.Spec.PodSpec.Containers[0].Env, corev1.EnvVar{Name: "ROLLOUT", Value: "2"})
			})
			waitAllOnNewHash(ctx, t, c, ns, "sdk", desired)
			newHash := getQWorker(ctx, t, c, ns, "sdk").Status.CurrentPodSpecHash
			if newHash == oldHash {
				t.Fatal("the podSpec change left status.currentPodSpecHash as it was")
			}
			waitFor(ctx, t, "the pod watch to show every worker ready on the new hash", func() (bool, error) {
				return pods.settled(newHash[:63], desired), nil
			})
			low, high, events := pods.stop(t)
			backlog := rdb.LLen(ctx, b.queue).Val()
			doneDuring := rdb.SCard(ctx, results+":swell:done").Val() - doneBefore
			tasks := feeding.stop(t)
			feeding = nil

			if backlog == 0 {
				t.Errorf("the queue ran dry during the rollout: not under load")
			}
			if off := offTarget.count(); off > 0 {
				t.Errorf("%d status versions showed desiredReplicas other than %d during the rollout", off, desired)
			}
			if low.ready < desired-1 {
				t.Errorf("ready workers fell to %d during the rollout, below desired − 1 = %d", low.ready, desired-1)
			}
			if high.early > 0 {
				t.Errorf("%d pods at once were Ready without their readiness gate %s True", high.early, qworker.ConditionTakingTasks)
			}
			if low.unmarked < desired-1 {
				t.Errorf("ready workers not marked for retirement fell to %d during the rollout, below desired − 1 = %d", low.unmarked, desired-1)
			}
			if limit := desired + int(tc.maxSurge); high.alive > limit {
				t.Errorf("%d workers alive at once during the rollout, above desired + maxSurge = %d", high.alive, limit)
			}

			waitProcessed(ctx, t, rdb, results, int64(tasks))
			waitFor(ctx, t, "the broker to hold no task", func() (bool, error) {
				n, err := b.left(ctx)
				return n == 0, err
			})
			done := rdb.SCard(ctx, results+":swell:done").Val()
			twice := duplicates(ctx, t, rdb, results)
			if int(done) != tasks || twice != 0 {
				t.Errorf("%d tasks: %d done, %d lost, %d twice", tasks, done, tasks-int(done), twice)
			}
			t.Logf("%s: rollout of %d pods, maxSurge %d: ready ≥ %d (min seen %d; not marked %d; having finished a task %d), alive ≤ %d (max seen %d; %d counting leaving workers not yet deleted), %d watch events; %d tasks done during the rollout, %d still queued at its end; %d tasks, %d lost, %d twice",
				tc.name, desired, tc.maxSurge, desired-1, low.ready, low.unmarked, low.serving, desired+int(tc.maxSurge), high.alive, high.live, events,
				doneDuring, backlog, tasks, tasks-int(done), twice)
		})
	}
}
