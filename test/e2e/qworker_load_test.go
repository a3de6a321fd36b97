package e2e

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
)

// qworkerWrites counts the writes that reached one QWorker's namespace:
// changes of the QWorker's status and spec (each accepted write bumps its
// resourceVersion), pods created, deleted or re-annotated, and events. It
// reads watches on that namespace rather than the API server's request
// counters, which are cluster-wide and would count the other tests'
// leftovers (namespaces being torn down, pools still draining).
type qworkerWrites struct{ status, qworkers, pods, events float64 }

// writeCounter keeps qworkerWrites from watches started by watchWrites.
type writeCounter struct {
	mu sync.Mutex
	w  qworkerWrites
}

func (c *writeCounter) read() qworkerWrites {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w
}

func (c *writeCounter) add(f func(*qworkerWrites)) {
	c.mu.Lock()
	f(&c.w)
	c.mu.Unlock()
}

// watchWrites starts the watches of QWorker name, and of the pods and
// events of ns, and counts their writes until ctx ends.
func watchWrites(ctx context.Context, t *testing.T, ns, name string) *writeCounter {
	t.Helper()
	dyn, err := dynamic.NewForConfig(env.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	// Each watch starts at the state listed now, so only later writes count.
	cur, err := dyn.Resource(qworkerGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	qw, err := dyn.Resource(qworkerGVR).Namespace(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: cur.GetResourceVersion()})
	if err != nil {
		t.Fatal(err)
	}
	podList, err := env.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods, err := env.Clientset.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: podList.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	eventList, err := env.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	events, err := env.Clientset.CoreV1().Events(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: eventList.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	c := &writeCounter{}
	go func() {
		defer qw.Stop()
		gen := cur.GetGeneration()
		for ev := range qw.ResultChan() {
			o, ok := ev.Object.(*unstructured.Unstructured)
			if !ok || ev.Type != watch.Modified {
				continue
			}
			spec := o.GetGeneration() != gen
			gen = o.GetGeneration()
			c.add(func(w *qworkerWrites) {
				if spec {
					w.qworkers++
				} else {
					w.status++
				}
			})
		}
	}()
	go func() {
		defer pods.Stop()
		marks := map[string]string{}
		for _, p := range podList.Items {
			marks[p.Name] = fmt.Sprint(p.Annotations, p.DeletionTimestamp != nil)
		}
		for ev := range pods.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			// What the controller writes on pods: creations, deletions
			// and its annotations (retirement marks); kubelet and kwok
			// status updates are not its writes.
			mark := fmt.Sprint(p.Annotations, p.DeletionTimestamp != nil)
			prev, seen := marks[p.Name]
			marks[p.Name] = mark
			if ev.Type == watch.Added && seen || ev.Type == watch.Modified && prev == mark {
				continue
			}
			c.add(func(w *qworkerWrites) { w.pods++ })
		}
	}()
	go func() {
		defer events.Stop()
		for ev := range events.ResultChan() {
			if ev.Type == watch.Added || ev.Type == watch.Modified {
				c.add(func(w *qworkerWrites) { w.events++ })
			}
		}
	}()
	return c
}

func (w qworkerWrites) minus(o qworkerWrites) qworkerWrites {
	return qworkerWrites{w.status - o.status, w.qworkers - o.qworkers, w.pods - o.pods, w.events - o.events}
}

// measurements is swell_qworker_measurements_total of one QWorker by trigger.
func measurements(t *testing.T, ns, name string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, trig := range []string{"poll", "push", "spec"} {
		out[trig] = counterValue(t, "swell_qworker_measurements_total", map[string]string{"namespace": ns, "qworker": name, "trigger": trig})
	}
	return out
}

// TestQWorkerLoadMeasuresOnTheClock runs a Redis queue with keyspace
// notifications at ≥ 50 messages/s in and out for 2 minutes under a
// QWorker polling every second, and counts its measurements (the
// controller's metric) and the API server's write requests; then, with the
// backlog steady at 0 and the pods idle, it proves that a minute of polls
// writes nothing and costs no reconcile pass per poll.
func TestQWorkerLoadMeasuresOnTheClock(t *testing.T) {
	c := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ns, rdb, queue := redisPushFixture(ctx, t, c)
	// minReplicas 2 and a small scaling factor: the pool stays at 2 while
	// the queue moves, so every write counted comes from the loop itself.
	qw := kwokQWorker(ns, "busy", queue, 2, 10, 0.1)
	if err := c.Create(ctx, qw); err != nil {
		t.Fatal(err)
	}
	waitForRunningPods(ctx, t, ns, "busy", 2)
	writes := watchWrites(ctx, t, ns, "busy")

	const load = 2 * time.Minute
	const interval = time.Second
	before, mBefore := writes.read(), measurements(t, ns, "busy")
	in, out := runRedisLoad(ctx, t, rdb, queue, load, 20*time.Millisecond)
	after, mAfter := writes.read(), measurements(t, ns, "busy")
	w := after.minus(before)
	poll, push, spec := mAfter["poll"]-mBefore["poll"], mAfter["push"]-mBefore["push"], mAfter["spec"]-mBefore["spec"]
	t.Logf("load %s: %d messages in (%.1f/s), %d out (%.1f/s)", load, in, float64(in)/load.Seconds(), out, float64(out)/load.Seconds())
	t.Logf("measurements: poll %.0f, push %.0f, spec %.0f (interval %s → at most %.0f polls)", poll, push, spec, interval, load.Seconds()/interval.Seconds()+2)
	t.Logf("writes in the namespace during the load: qworkers/status %.0f, qworkers %.0f, pods %.0f, events %.0f", w.status, w.qworkers, w.pods, w.events)
	if float64(in)/load.Seconds() < 50 || float64(out)/load.Seconds() < 50 {
		t.Fatalf("load below 50 messages/s in and out")
	}
	if poll > load.Seconds()/interval.Seconds()+2 {
		t.Fatalf("%.0f polls in %s at a %s interval", poll, load, interval)
	}
	// The pool stayed at its floor: no wake-up may measure early (they do
	// only while the pool is at zero or grows), and nothing changed the spec.
	if push > 5 || spec > 0 {
		t.Fatalf("%.0f push and %.0f spec measurements on a steady pool", push, spec)
	}
	// At most one status write per measurement (the backlog in
	// status.backlog and lastDecision), never one per wake-up.
	if w.status > poll+push+spec {
		t.Fatalf("%.0f status writes for %.0f measurements", w.status, poll+push+spec)
	}
	if w.qworkers > 0 {
		t.Fatalf("%.0f writes of the QWorker itself; the controller writes only its status", w.qworkers)
	}
	if w.pods > 0 {
		t.Fatalf("%.0f pod writes while the pool held at 2", w.pods)
	}

	// Idle: the queue empty, the pods idle. After the backlog reads 0 in
	// status, a minute of passes writes nothing.
	if err := rdb.Del(ctx, queue).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "status.backlog 0", func() (bool, error) {
		got := getQWorker(ctx, t, c, ns, "busy")
		return got.Status.Backlog != nil && *got.Status.Backlog == 0 && got.Status.LastDecision != nil && got.Status.LastDecision.Backlog == 0, nil
	})
	time.Sleep(2 * interval) // the write of the backlog reaching 0 lands
	idleBefore, mIdle := writes.read(), measurements(t, ns, "busy")
	passesBefore := counterValue(t, "controller_runtime_reconcile_total", map[string]string{"controller": "qworker"})
	time.Sleep(time.Minute)
	idle := writes.read().minus(idleBefore)
	mIdleAfter := measurements(t, ns, "busy")
	passes := counterValue(t, "controller_runtime_reconcile_total", map[string]string{"controller": "qworker"}) - passesBefore
	idlePolls := mIdleAfter["poll"] - mIdle["poll"]
	t.Logf("idle minute: %.0f passes, %.0f measurements, qworkers/status writes %.0f, pods %.0f, events %.0f", passes, idlePolls, idle.status, idle.pods, idle.events)
	if idlePolls < 30 {
		t.Fatalf("only %.0f measurements in the idle minute: the controller did not poll", idlePolls)
	}
	// The idle pool at its floor is settled: the poller measures it and an
	// unchanged sample wakes no reconcile (the passes counted are the whole
	// controller's, other QWorkers included).
	if passes >= idlePolls/2 {
		t.Fatalf("%.0f reconcile passes for %.0f measurements of an idle, settled pool: its polls still cost a pass each", passes, idlePolls)
	}
	if idle.status != 0 || idle.qworkers != 0 || idle.pods != 0 {
		t.Fatalf("idle minute wrote %.0f statuses, %.0f QWorkers, %.0f pods; want 0", idle.status, idle.qworkers, idle.pods)
	}
}

// runRedisLoad pushes one message every period and pops one every period
// until d has passed, and returns how many went in and out.
func runRedisLoad(ctx context.Context, t *testing.T, rdb *redis.Client, queue string, d, period time.Duration) (in, out int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	run := func(f func() bool, n *int) {
		defer wg.Done()
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				// Catch up after a slow tick so the rate holds on a busy machine.
				for range 2 {
					if f() {
						mu.Lock()
						*n++
						mu.Unlock()
					}
				}
			}
		}
	}
	wg.Add(2)
	go run(func() bool { return rdb.LPush(ctx, queue, "task").Err() == nil }, &in)
	go run(func() bool { return rdb.RPop(ctx, queue).Err() == nil }, &out)
	wg.Wait()
	return in, out
}

// TestQWorkerLoadBrokenBrokerDoesNotSlowOthers measures how fast a healthy
// QWorker reacts to a pushed task with no broken QWorker, then with 16
// QWorkers on a broker that accepts connections and never answers.
func TestQWorkerLoadBrokenBrokerDoesNotSlowOthers(t *testing.T) {
	c := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ns, rdb, queue := redisPushFixture(ctx, t, c)
	healthy := kwokQWorker(ns, "healthy", queue, 0, 5, 1)
	healthy.Spec.ScaleConfig.PollingIntervalSeconds = ptr.To[int32](30) // push, not the poll, reacts
	// The scale back to 0 between trials only resets the pool: without a
	// window it follows the next poll instead of the default two polls.
	healthy.Spec.ScaleConfig.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{
		ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To[int32](0)}}
	if err := c.Create(ctx, healthy); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the healthy QWorker's first decision", func() (bool, error) {
		got := getQWorker(ctx, t, c, ns, "healthy")
		return got.Status.ObservedGeneration == got.Generation && got.Status.CurrentPodSpecHash != "", nil
	})
	react := func(label string) []time.Duration {
		var out []time.Duration
		for i := range 3 {
			time.Sleep(time.Second)
			start := time.Now()
			if err := rdb.LPush(ctx, queue, "task").Err(); err != nil {
				t.Fatal(err)
			}
			if err := waitPods(ctx, ns, "healthy", 1, time.Minute); err != nil {
				t.Fatalf("%s, task %d: %v", label, i, err)
			}
			out = append(out, time.Since(start))
			if err := rdb.Del(ctx, queue).Err(); err != nil {
				t.Fatal(err)
			}
			if err := waitPods(ctx, ns, "healthy", 0, 2*time.Minute); err != nil {
				t.Fatalf("%s, scale back to 0: %v", label, err)
			}
		}
		return out
	}
	base := react("N=0")

	// A broker that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var heldMu sync.Mutex
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, conn)
			heldMu.Unlock()
		}
	}()
	defer func() {
		_ = ln.Close()
		heldMu.Lock()
		for _, c := range held {
			_ = c.Close()
		}
		heldMu.Unlock()
	}()
	const n = 16
	for i := range n {
		name := fmt.Sprintf("silent-%d", i)
		if err := c.Create(ctx, redisScalerConfig(ns, name, ln.Addr().String())); err != nil {
			t.Fatal(err)
		}
		b := kwokQWorker(ns, fmt.Sprintf("broken-%d", i), "q", 0, 5, 1)
		b.Spec.ScaleConfig.ScalerConfigRef = name
		if err := c.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// Every broken QWorker has tried its broker and failed.
	waitFor(ctx, t, "all 16 broken QWorkers report their source failing", func() (bool, error) {
		var list qv1.QWorkerList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false, err
		}
		failing := 0
		for _, q := range list.Items {
			for _, cond := range q.Status.Conditions {
				if strings.HasPrefix(q.Name, "broken-") && cond.Type == "SourceHealthy" && cond.Status == "False" {
					failing++
				}
			}
		}
		return failing == n, nil
	})
	loaded := react(fmt.Sprintf("N=%d", n))
	median := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	heldMu.Lock()
	conns := len(held)
	heldMu.Unlock()
	t.Logf("healthy QWorker's reaction to a pushed task: N=0 %v (median %v); N=%d broken %v (median %v); %d connections held by the silent broker",
		base, median(base), n, loaded, median(loaded), conns)
	if conns == 0 {
		t.Fatal("no QWorker ever dialled the silent broker")
	}
	// Within 2× of N=0; the reference is at least 500 ms, since a few
	// hundred milliseconds of jitter on a shared machine is not a slowdown.
	if limit := 2 * max(median(base), 500*time.Millisecond); median(loaded) > limit {
		t.Fatalf("with %d broken QWorkers the healthy one reacted in %v (median), more than %v", n, median(loaded), limit)
	}
}
