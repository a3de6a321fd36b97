package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
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
	"github.com/swell-autoscaler/swell/internal/controller"
	"github.com/swell-autoscaler/swell/internal/controller/qworker"
)

// BenchmarkControllerAtScale runs the shipped `swell controller` binary,
// as its own process, against N QWorkers spread over 10 Redis ScalerConfigs
// (1 s polling, min 0, max 1, kwok pods) on the real control plane, and
// prints what an operator sizing the controller needs: the time from
// start to a first decision for every QWorker (and again after a restart),
// the controller's CPU and RSS, the API server's write requests by verb and
// resource (from its own /metrics), Redis commands per second, and the
// time 20 random QWorkers take from a task pushed onto their empty queue to
// their first pod, with (a) every queue idle and (b) 10 % of the queues
// moving. With replicas > 1 the controllers form a shard ring
// (--shard-ring) and the figures are per replica and summed. Nothing is
// asserted about speed; run one case at a time:
//
//	go test -run '^$' -bench 'ControllerAtScale/n=1000/replicas=1$' -benchtime 1x -timeout 60m ./test/e2e/
//
// SWELL_BENCH_QPS=200 runs the controllers with --kube-api-qps and
// --kube-api-burst 200; SWELL_BENCH_PPROF=127.0.0.1:6060 serves the first
// replica's Go profiles there.
func BenchmarkControllerAtScale(b *testing.B) {
	for _, c := range []struct{ n, replicas int }{{1000, 1}, {5000, 1}, {5000, 3}, {10000, 1}} {
		b.Run(fmt.Sprintf("n=%d/replicas=%d", c.n, c.replicas), func(b *testing.B) {
			for range b.N {
				runScaleScenario(b, c.n, c.replicas)
			}
		})
	}
}

// scaleScalerConfigs is how many ScalerConfigs the QWorkers share.
const scaleScalerConfigs = 10

func runScaleScenario(b *testing.B, n, replicas int) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	if err := env.InstallCRDs(ctx, "../../config/crd/bases"); err != nil {
		b.Fatal(err)
	}
	scheme, err := controller.NewScheme(qv1.AddToScheme)
	if err != nil {
		b.Fatal(err)
	}
	c, err := client.New(env.RESTConfig, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	ns := fmt.Sprintf("bench-scale-%d-%d", n, time.Now().Unix())
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = env.Clientset.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	}()
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr, PoolSize: 32})
	defer func() { _ = rdb.Close() }()
	queues := createScaleObjects(ctx, b, c, ns, n)

	bin := buildSwell(b)
	started := time.Now()
	p := startScaleControllers(b, bin, ns, replicas)
	took := waitAllDecided(ctx, b, p, ns, n, started)
	b.Logf("n=%d: first decision for all %d QWorkers %.1f s after the controller started", n, n, took.Seconds())
	b.ReportMetric(took.Seconds(), "start-s")
	took = waitAllReported(ctx, b, c, ns, n, started)
	b.Logf("n=%d: status written for all %d QWorkers %.1f s after the controller started", n, n, took.Seconds())
	b.ReportMetric(took.Seconds(), "start-status-s")

	idle := measureSteady(ctx, b, p, rdb, time.Minute)
	idle.log(b, n, "idle")
	idle.report(b, "idle")
	reactIdle := reaction(ctx, b, rdb, ns, queues, 20)
	b.Logf("n=%d idle: reaction of 20 random QWorkers to a push, p50 %.2f s, p95 %.2f s", n, pct(reactIdle, 50), pct(reactIdle, 95))
	b.ReportMetric(pct(reactIdle, 95), "idle-react-p95-s")

	stopChurn := churn(ctx, rdb, queues[:len(queues)/10])
	time.Sleep(20 * time.Second) // the moving queues' pools reach their size
	moving := measureSteady(ctx, b, p, rdb, time.Minute)
	moving.log(b, n, "10% moving")
	moving.report(b, "moving")
	reactMoving := reaction(ctx, b, rdb, ns, queues[len(queues)/10:], 20)
	b.Logf("n=%d 10%% moving: reaction of 20 random idle QWorkers to a push, p50 %.2f s, p95 %.2f s", n, pct(reactMoving, 50), pct(reactMoving, 95))
	b.ReportMetric(pct(reactMoving, 95), "moving-react-p95-s")
	stopChurn()

	p.stop()
	started = time.Now()
	p = startScaleControllers(b, bin, ns, replicas)
	defer p.stop()
	took = waitAllDecided(ctx, b, p, ns, n, started)
	b.Logf("n=%d: after a restart, first decision for all %d QWorkers %.1f s after the controller started", n, n, took.Seconds())
	b.ReportMetric(took.Seconds(), "restart-s")
}

// createScaleObjects creates the ScalerConfigs and n QWorkers, 32 at a
// time, and returns the QWorkers' queues in QWorker order.
func createScaleObjects(ctx context.Context, b *testing.B, c client.Client, ns string, n int) []string {
	for i := range scaleScalerConfigs {
		sc := redisScalerConfig(ns, fmt.Sprintf("redis-%d", i), env.RedisAddr)
		sc.Spec.Config.KeyspaceNotifications = false
		if err := c.Create(ctx, sc); err != nil {
			b.Fatal(err)
		}
	}
	queues := make([]string, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range n {
		queues[i] = fmt.Sprintf("%s-q%05d", ns, i)
		qw := kwokQWorker(ns, fmt.Sprintf("q%05d", i), queues[i], 0, 1, 1)
		qw.Spec.ScaleConfig.ScalerConfigRef = fmt.Sprintf("redis-%d", i%scaleScalerConfigs)
		qw.Spec.ScaleConfig.PollingIntervalSeconds = ptr.To[int32](1)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := c.Create(ctx, qw); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	return queues
}

// scaleProcess is a running `swell controller` and its metrics address.
type scaleProcess struct {
	cmd         *exec.Cmd
	done        chan struct{}
	metricsAddr string
}

// scaleGroup is the controller replicas of one run.
type scaleGroup []*scaleProcess

func (g scaleGroup) stop() {
	for _, p := range g {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range g {
		select {
		case <-p.done:
		case <-time.After(45 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// startScaleControllers runs the controller binary with its defaults
// (client QPS and burst included), watching ns only, each log in the env
// directory: one process, or a shard ring of replicas (leases in ns).
func startScaleControllers(b *testing.B, bin, ns string, replicas int) scaleGroup {
	var g scaleGroup
	for i := range replicas {
		addr := freeLoopbackAddr(b)
		f, err := os.Create(filepath.Join(env.Dir, fmt.Sprintf("%s-controller-%d.log", ns, i)))
		if err != nil {
			b.Fatal(err)
		}
		args := []string{"controller", "--kubeconfig", env.Kubeconfig, "--namespace", ns, "--node-pools=false",
			"--metrics-bind-address", addr, "--health-probe-bind-address", "0", "--egress-allow", "127.0.0.1/32"}
		if qps := os.Getenv("SWELL_BENCH_QPS"); qps != "" {
			// The client's rate limit bounds a fresh start (one status write
			// per new QWorker): compare the default with a raised one.
			args = append(args, "--kube-api-qps", qps, "--kube-api-burst", qps)
		}
		if pprof := os.Getenv("SWELL_BENCH_PPROF"); pprof != "" && i == 0 {
			// Profile the first replica: go tool pprof http://$SWELL_BENCH_PPROF/debug/pprof/profile
			args = append(args, "--pprof-bind-address", pprof)
		}
		if replicas > 1 {
			args = append(args, "--shard-ring", "bench", "--shard-identity", fmt.Sprintf("replica-%d", i), "--leader-election-namespace", ns)
		}
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		p := &scaleProcess{cmd: cmd, done: make(chan struct{}), metricsAddr: addr}
		go func() {
			_ = cmd.Wait()
			_ = f.Close()
			close(p.done)
		}()
		g = append(g, p)
	}
	return g
}

// freeLoopbackAddr is a loopback address nothing listens on.
func freeLoopbackAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// waitAllDecided waits until the controllers' own /metrics show a
// measurement for each of the n QWorkers of ns (its first decision), and
// returns how long after start (the processes started) that was.
func waitAllDecided(ctx context.Context, b *testing.B, g scaleGroup, ns string, n int, start time.Time) time.Duration {
	for {
		for _, p := range g {
			select {
			case <-p.done:
				b.Fatalf("controller exited before deciding for all QWorkers (log in %s)", env.Dir)
			default:
			}
		}
		select {
		case <-ctx.Done():
			b.Fatal(ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
		seen := map[string]bool{}
		for _, p := range g {
			decided(p.metricsAddr, ns, seen)
		}
		if len(seen) >= n {
			return time.Since(start)
		}
	}
}

// waitAllReported waits until each of the n QWorkers of ns shows a status
// (its Ready condition: statuses are written behind the decisions, at the
// client's rate limit) and returns how long after start that was.
func waitAllReported(ctx context.Context, b *testing.B, c client.Client, ns string, n int, start time.Time) time.Duration {
	for {
		var list qv1.QWorkerList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			b.Fatal(err)
		}
		reported := 0
		for _, qw := range list.Items {
			if len(qw.Status.Conditions) > 0 {
				reported++
			}
		}
		if reported >= n {
			return time.Since(start)
		}
		select {
		case <-ctx.Done():
			b.Fatal(ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

// decided adds to seen the QWorkers of ns with a measurement in a
// controller's swell_qworker_measurements_total.
func decided(metricsAddr, ns string, seen map[string]bool) {
	scrapeLines(metricsAddr, func(line string) {
		if !strings.HasPrefix(line, "swell_qworker_measurements_total{") || !strings.Contains(line, `namespace="`+ns+`"`) {
			return
		}
		_, name, ok := strings.Cut(line, `qworker="`)
		if name, _, ok2 := strings.Cut(name, `"`); ok && ok2 {
			seen[name] = true
		}
	})
}

// scrapeLines calls each with every line of a controller's /metrics
// (nothing when it cannot be read).
func scrapeLines(metricsAddr string, each func(line string)) {
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		each(sc.Text())
	}
}

// steady is one steady-state window's figures.
type steady struct {
	window      time.Duration
	cores       float64            // all replicas
	perReplica  []float64          // cores
	rssMiB      float64            // the largest replica's
	writes      map[string]float64 // "verb resource" → requests in the window
	redisPerSec float64
	redisByCmd  map[string]float64 // command → calls per second
	// passesPerSec and measuresPerSec are QWorker reconcile passes and
	// queue measurements per second, all replicas: with quiet polling a
	// measurement of an idle queue is no pass.
	passesPerSec, measuresPerSec float64
	writesPerMin                 float64
}

// measureSteady samples the controller's CPU and RSS from /proc, the API
// server's write requests and Redis's commands over window.
func measureSteady(ctx context.Context, b *testing.B, g scaleGroup, rdb *redis.Client, window time.Duration) steady {
	cpu0 := make([]time.Duration, len(g))
	for i, p := range g {
		cpu0[i] = procCPU(b, p.cmd.Process.Pid)
	}
	writes0, cmds0 := apiserverWrites(ctx, b), redisCommands(ctx, b, rdb)
	passes0, measures0 := g.counter(qworkerPasses), g.counter(qworkerMeasures)
	time.Sleep(window)
	writes1, cmds1 := apiserverWrites(ctx, b), redisCommands(ctx, b, rdb)
	s := steady{window: window, writes: map[string]float64{}, redisByCmd: map[string]float64{}}
	s.passesPerSec = (g.counter(qworkerPasses) - passes0) / window.Seconds()
	s.measuresPerSec = (g.counter(qworkerMeasures) - measures0) / window.Seconds()
	for i, p := range g {
		c := (procCPU(b, p.cmd.Process.Pid) - cpu0[i]).Seconds() / window.Seconds()
		s.perReplica = append(s.perReplica, c)
		s.cores += c
		s.rssMiB = max(s.rssMiB, procRSSMiB(b, p.cmd.Process.Pid))
	}
	for k, v := range writes1 {
		if d := v - writes0[k]; d > 0 {
			s.writes[k] = d
			s.writesPerMin += d / window.Minutes()
		}
	}
	for k, v := range cmds1 {
		if d := (v - cmds0[k]) / window.Seconds(); d > 0 {
			s.redisByCmd[k] = d
			s.redisPerSec += d
		}
	}
	return s
}

func (s steady) log(b *testing.B, n int, phase string) {
	b.Logf("n=%d %s: controllers %.3f cores over %v (per replica %.3f), RSS %.0f MiB (largest replica); QWorker passes %.0f/s, measurements %.0f/s; API server writes %.1f/min %v; Redis %.0f commands/s %v",
		n, phase, s.cores, s.window, s.perReplica, s.rssMiB, s.passesPerSec, s.measuresPerSec, s.writesPerMin, roundMap(s.writes), s.redisPerSec, roundMap(s.redisByCmd))
}

func (s steady) report(b *testing.B, phase string) {
	b.ReportMetric(s.cores*1000, phase+"-millicores")
	b.ReportMetric(slices.Max(s.perReplica)*1000, phase+"-max-replica-millicores")
	b.ReportMetric(s.rssMiB, phase+"-rss-MiB")
	b.ReportMetric(s.writesPerMin, phase+"-writes/min")
	b.ReportMetric(s.redisPerSec, phase+"-redis-cmds/s")
	b.ReportMetric(s.passesPerSec, phase+"-passes/s")
}

// The counters measureSteady reads from the controllers' /metrics.
const (
	qworkerPasses   = `controller_runtime_reconcile_total{controller="qworker"`
	qworkerMeasures = `swell_qworker_measurements_total{`
)

// counter sums the series starting with prefix over the replicas.
func (g scaleGroup) counter(prefix string) float64 {
	var sum float64
	for _, p := range g {
		sum += metricSum(p.metricsAddr, prefix)
	}
	return sum
}

// metricSum sums the values of the series starting with prefix at a
// controller's /metrics (0 when it cannot be read).
func metricSum(metricsAddr, prefix string) float64 {
	var sum float64
	scrapeLines(metricsAddr, func(line string) {
		if !strings.HasPrefix(line, prefix) {
			return
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			sum += v
		}
	})
	return sum
}

func roundMap(m map[string]float64) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = int(v + 0.5)
	}
	return out
}

// procCPU is a process's user+system CPU time from /proc/<pid>/stat.
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start at state.
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}

// procRSSMiB is a process's resident set from /proc/<pid>/status.
func procRSSMiB(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// apiserverWrites sums the API server's apiserver_request_total for writes
// (every verb but get, list and watch), by "verb resource[/subresource]".
func apiserverWrites(ctx context.Context, b *testing.B) map[string]float64 {
	b.Helper()
	out := map[string]float64{}
	for _, s := range apiserverSeries(ctx, b, "apiserver_request_total") {
		verb, resource := s.labels["verb"], s.labels["resource"]
		if verb == "GET" || verb == "LIST" || verb == "WATCH" {
			continue
		}
		if sub := s.labels["subresource"]; sub != "" {
			resource += "/" + sub
		}
		out[verb+" "+resource] += s.value
	}
	return out
}

// redisCommands is Redis's calls so far by command (INFO commandstats).
func redisCommands(ctx context.Context, b *testing.B, rdb *redis.Client) map[string]float64 {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for line := range strings.SplitSeq(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_")
		if !ok {
			continue
		}
		name, stats, _ := strings.Cut(rest, ":")
		calls, _, _ := strings.Cut(strings.TrimPrefix(stats, "calls="), ",")
		v, _ := strconv.ParseFloat(calls, 64)
		out[name] = v
	}
	return out
}

// churn keeps each of queues moving between 1 and 10 tasks (maxReplicas 1
// keeps each pool at one pod), until the returned stop is called.
func churn(ctx context.Context, rdb *redis.Client, queues []string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for i := 0; ; i++ {
			_, _ = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, q := range queues {
					p.LTrim(ctx, q, 0, 0)
					p.LPush(ctx, q, slices.Repeat([]any{"t"}, 1+(i%9))...)
				}
				return nil
			})
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		cancel()
		<-done
		for _, q := range queues {
			rdb.Del(context.Background(), q)
		}
	}
}

// reaction pushes one task onto k random queues of pools at zero at once
// and returns, per QWorker, the seconds from the push to its first pod
// (seen by a pod watch); it then empties those queues again.
func reaction(ctx context.Context, b *testing.B, rdb *redis.Client, ns string, queues []string, k int) []float64 {
	picked := map[string]string{} // QWorker name → queue
	for len(picked) < k {
		q := queues[rand.IntN(len(queues))]
		picked[strings.TrimPrefix(q, ns+"-")] = q
	}
	w, err := env.Clientset.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: qworker.LabelQWorker})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	for _, q := range picked {
		rdb.LPush(ctx, q, "probe")
	}
	defer func() {
		for _, q := range picked {
			rdb.Del(context.Background(), q)
		}
	}()
	got := map[string]float64{}
	timeout := time.After(5 * time.Minute)
	for len(got) < k {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatal("pod watch closed")
			}
			pod, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type != watch.Added {
				continue
			}
			name := pod.Labels[qworker.LabelQWorker]
			if _, want := picked[name]; want && got[name] == 0 {
				got[name] = time.Since(start).Seconds()
			}
		case <-timeout:
			b.Fatalf("only %d of %d QWorkers made a pod within 5 minutes of a push", len(got), k)
		}
	}
	out := make([]float64, 0, k)
	for _, v := range got {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// pct is the p-th percentile of sorted.
func pct(sorted []float64, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, (len(sorted)*p)/100)
	return sorted[i]
}
