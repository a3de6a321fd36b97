package e2e

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
)

// BenchmarkReactionEnqueueToPod measures, on the real control plane, the
// time from an LPUSH onto an empty queue (pool at zero) to the worker pod's
// creation, with push (keyspace notifications, 30 s poll) and with polling
// alone (1 s). It prints p50/p95; nothing is asserted about speed.
func BenchmarkReactionEnqueueToPod(b *testing.B) {
	for _, mode := range []struct {
		name string
		push bool
		poll int32
	}{{"push", true, 30}, {"poll-1s", false, 1}} {
		b.Run(mode.name, func(b *testing.B) {
			c := startControllerB(b)
			ctx := context.Background()
			ns := fmt.Sprintf("bench-%s-%d", mode.name, time.Now().UnixNano())
			if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
			defer func() { _ = rdb.Close() }()
			sc := redisScalerConfig(ns, "redis", env.RedisAddr)
			sc.Spec.Config.KeyspaceNotifications = mode.push
			if err := c.Create(ctx, sc); err != nil {
				b.Fatal(err)
			}
			queue := ns + "-q"
			qw := kwokQWorker(ns, "react", queue, 0, 1, 1)
			qw.Spec.ScaleConfig.PollingIntervalSeconds = ptr.To(mode.poll)
			if err := c.Create(ctx, qw); err != nil {
				b.Fatal(err)
			}
			var lat []time.Duration
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				rdb.LPush(ctx, queue, "x")
				if err := waitPods(ctx, ns, "react", 1, time.Minute); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				b.StopTimer()
				rdb.Del(ctx, queue)
				if err := waitPods(ctx, ns, "react", 0, time.Minute); err != nil {
					b.Fatal(err)
				}
				time.Sleep(500 * time.Millisecond) // let the pool settle at zero
				b.StartTimer()
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
			b.ReportMetric(float64(lat[(len(lat)*95)/100].Milliseconds()), "p95-ms")
		})
	}
}

// startControllerB starts the shared controller for a benchmark. The
// testing.T only carries startController's failure, which Fatal reports.
func startControllerB(b *testing.B) client.Client {
	b.Helper()
	t := &testing.T{}
	c := startController(t)
	if controllerErr != nil {
		b.Fatalf("start Swell controller: %v", controllerErr)
	}
	return c
}

// waitPods waits until the QWorker has exactly n alive pods.
func waitPods(ctx context.Context, ns, name string, n int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		pods, err := alivePods(ctx, ns, name)
		if err == nil && len(pods) == n {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("QWorker %s/%s did not reach %d pods", ns, name, n)
}

// BenchmarkSteadyState1000QWorkers creates 1,000 idle QWorkers (empty
// queues, min 0, 5 s polls) and reports the in-process controller's CPU use
// and heap over 30 s of steady state, and the heap growth per QWorker.
func BenchmarkSteadyState1000QWorkers(b *testing.B) {
	c := startControllerB(b)
	ctx := context.Background()
	ns := fmt.Sprintf("bench-steady-%d", time.Now().UnixNano())
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := c.Create(ctx, redisScalerConfig(ns, "redis", env.RedisAddr)); err != nil {
		b.Fatal(err)
	}
	heapBefore := heapInUse()
	const n = 1000
	for i := range n {
		qw := kwokQWorker(ns, fmt.Sprintf("q%04d", i), fmt.Sprintf("%s-q%04d", ns, i), 0, 5, 1)
		qw.Spec.ScaleConfig.PollingIntervalSeconds = ptr.To[int32](5)
		if err := c.Create(ctx, qw); err != nil {
			b.Fatal(err)
		}
	}
	// Wait until every QWorker has been reconciled once.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var list qv1.QWorkerList
		if err := c.List(ctx, &list); err != nil {
			b.Fatal(err)
		}
		done := 0
		for _, q := range list.Items {
			if q.Namespace == ns && q.Status.CurrentPodSpecHash != "" {
				done++
			}
		}
		if done == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d QWorkers reconciled", done, n)
		}
		time.Sleep(time.Second)
	}
	b.ResetTimer()
	for range b.N {
		cpu0 := cpuTime()
		time.Sleep(30 * time.Second)
		cores := (cpuTime() - cpu0).Seconds() / 30
		b.ReportMetric(cores*1000, "millicores")
	}
	heap := heapInUse()
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(heap-heapBefore)/n/1024, "heap-KiB/qworker")
}

// cpuTime is this process's user+system CPU time; the controller runs in
// this process (the apiserver and brokers are separate processes).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
