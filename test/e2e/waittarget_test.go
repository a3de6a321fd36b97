package e2e

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/source/stats"
)

// Wait-target scenario: real `swell demo-worker` processes (Go SDK) on the
// process node take 0.5 s tasks from Redis lists. The same arrivals go to
// three pools at once: one with targetWaitSeconds 5 and two ratio pools
// (scalingFactor 0.1 and 0.3) that bracket its p95, so the ratio policy's
// pod-seconds at the same p95 are read off the line between them.
const (
	wtTaskTime   = 500 * time.Millisecond
	wtTarget     = 5.0 // seconds, p95
	wtMaxR       = 12
	wtBurst      = 50
	wtTail       = 30 * time.Second // pods are counted this long after the last task
	wtStatsEvery = "2"              // SWELL_STATS_INTERVAL of the workers
)

// wtPhase is one stretch of the load: rate goes linearly from -> to tasks/s
// over d; burst tasks are pushed at its start.
type wtPhase struct {
	name     string
	d        time.Duration
	from, to float64
	burst    int
}

// wtLoad: a ramp 1 → 12 tasks/s over 60 s, 15 s at 12/s, then a burst of
// 50 tasks on top of 3/s for 25 s.
var wtLoad = []wtPhase{
	{name: "ramp", d: 60 * time.Second, from: 1, to: 12},
	{name: "steady", d: 15 * time.Second, from: 12, to: 12},
	{name: "burst", d: 25 * time.Second, from: 3, to: 3, burst: wtBurst},
}

// wtPool is one QWorker of the scenario and what was measured about it.
type wtPool struct {
	name    string
	queue   string
	results string
	factor  float64
	wait    *float64

	mu         sync.Mutex
	podSeconds float64
	// tailSeconds is the part of podSeconds after every task was done.
	tailSeconds float64
	maxPods     int
	model       *qv1.WaitModel
	modelSeen   int
	reason      string
	// peak is the model and reason when the model asked for the most
	// workers.
	peak       *qv1.WaitModel
	peakReason string
}

func TestWaitTargetRampAndBurst(t *testing.T) {
	c := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	defer func() { _ = rdb.Close() }()
	if err := c.Create(ctx, redisScalerConfig(ns, "broker", env.RedisAddr)); err != nil {
		t.Fatal(err)
	}
	pools := []*wtPool{
		{name: "wait", factor: 0.1, wait: ptr.To(wtTarget)},
		{name: "ratio-01", factor: 0.1},
		{name: "ratio-03", factor: 0.3},
	}
	bin := buildSwell(t)
	for _, p := range pools {
		p.queue, p.results = ns+"-"+p.name, ns+"-"+p.name+"-results"
		if err := c.Create(ctx, wtQWorker(ns, p, bin)); err != nil {
			t.Fatalf("create QWorker %s: %v", p.name, err)
		}
	}
	for _, p := range pools {
		waitForRunningPods(ctx, t, ns, p.name, 1)
	}

	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	var tail atomic.Bool
	go func() {
		defer close(sampled)
		wtSample(sampleCtx, c, ns, pools, &tail)
	}()
	start := time.Now()
	total := wtPush(ctx, t, rdb, pools)
	loadEnd := time.Now()
	for _, p := range pools {
		waitFor(ctx, t, fmt.Sprintf("pool %s to finish its %d tasks", p.name, total), func() (bool, error) {
			n, err := rdb.HLen(ctx, p.results+":swell:started").Result()
			return n >= int64(total), err
		})
	}
	lastTask := time.Now()
	tail.Store(true)
	select {
	case <-ctx.Done():
	case <-time.After(wtTail):
	}
	stopSampling()
	<-sampled
	window := time.Since(start)

	// The workers reported their counters on their pods, and the model
	// read them: a service time near the 0.5 s tasks and a known rate.
	wp := pools[0]
	if wp.model == nil || wp.modelSeen == 0 {
		t.Fatalf("status.waitModel never appeared on the wait-target pool (last reason: %s)", wp.reason)
	}
	if s := wp.model.ServiceTimeSeconds; s < 0.4 || s > 1.5 {
		t.Fatalf("status.waitModel.serviceTimeSeconds = %v, want about the 0.5 s tasks take (model %+v)", s, *wp.model)
	}
	wtCheckReports(ctx, t, ns)

	type result struct {
		pool     *wtPool
		p50, p95 float64
		max      float64
		phase95  map[string]float64
	}
	var results []result
	for _, p := range pools {
		waits, byPhase := wtWaits(ctx, t, rdb, p.results)
		done, err := rdb.SCard(ctx, p.results+":swell:done").Result()
		if err != nil {
			t.Fatal(err)
		}
		if done != int64(total) {
			t.Fatalf("pool %s finished %d distinct tasks of %d", p.name, done, total)
		}
		r := result{pool: p, p50: wtQuantile(waits, 0.5), p95: wtQuantile(waits, 0.95), max: wtQuantile(waits, 1), phase95: map[string]float64{}}
		for ph, ws := range byPhase {
			r.phase95[ph] = wtQuantile(ws, 0.95)
		}
		results = append(results, r)
		t.Logf("%-9s %4d tasks: wait p50 %5.2fs p95 %5.2fs max %5.2fs (p95 ramp %.2fs, steady %.2fs, burst %.2fs); %4.0f pod-seconds over %s (%3.0f of them after the last task), peak %d pods",
			p.name, total, r.p50, r.p95, r.max, r.phase95["ramp"], r.phase95["steady"], r.phase95["burst"], p.podSeconds, window.Round(time.Second), p.tailSeconds, p.maxPods)
	}
	t.Logf("load %s (%d tasks), last task done %s after the load ended; pods counted until %s after it",
		loadEnd.Sub(start).Round(time.Second), total, lastTask.Sub(loadEnd).Round(time.Second), wtTail)
	t.Logf("wait-target model at its largest answer: %s; reason: %s", fmtModel(wp.peak), wp.peakReason)
	t.Logf("wait-target model at the end: %s; reason: %s", fmtModel(wp.model), wp.reason)

	w, a, b := results[0], results[1], results[2]
	if w.p95 <= wtTarget {
		t.Logf("wait target met: p95 %.2fs ≤ %.0fs", w.p95, wtTarget)
	} else {
		worst, worstPhase := 0.0, ""
		for ph, v := range w.phase95 {
			if v > worst {
				worst, worstPhase = v, ph
			}
		}
		t.Logf("wait target missed by %.2fs: p95 %.2fs > %.0fs; worst phase %s (p95 %.2fs); pods take %.1fs to start (status.waitModel.startupSeconds), and tasks that arrive while a new pod starts wait for it",
			w.p95-wtTarget, w.p95, wtTarget, worstPhase, worst, wp.model.StartupSeconds)
	}
	// A model that works keeps p95 within twice the target even on a
	// loaded machine; beyond that it is not sizing for the wait.
	if w.p95 > 2*wtTarget {
		t.Fatalf("wait-target pool p95 %.2fs, more than twice the %.0fs target", w.p95, wtTarget)
	}
	// Ratio pods at the wait-target pool's p95, on the line between the two
	// ratio runs (p95, pod-seconds).
	lo, hi := a, b
	if lo.p95 > hi.p95 {
		lo, hi = hi, lo
	}
	switch {
	case w.p95 >= lo.p95 && w.p95 <= hi.p95 && hi.p95 > lo.p95:
		f := (w.p95 - lo.p95) / (hi.p95 - lo.p95)
		ratioPS := lo.pool.podSeconds + f*(hi.pool.podSeconds-lo.pool.podSeconds)
		t.Logf("at p95 %.2fs: wait target %.0f pod-seconds, ratio policy %.0f (interpolated between scalingFactor %g and %g): %.2f×",
			w.p95, w.pool.podSeconds, ratioPS, lo.pool.factor, hi.pool.factor, w.pool.podSeconds/ratioPS)
	default:
		t.Logf("the ratio runs (p95 %.2fs and %.2fs) do not bracket the wait-target p95 %.2fs: pod-seconds wait target %.0f, scalingFactor %g %.0f, scalingFactor %g %.0f",
			a.p95, b.p95, w.p95, w.pool.podSeconds, a.pool.factor, a.pool.podSeconds, b.pool.factor, b.pool.podSeconds)
	}
}

// wtQWorker is pool p: demo workers with 0.5 s tasks, 1 to wtMaxR pods,
// measured every second; with p.wait set, sized by the wait target.
func wtQWorker(ns string, p *wtPool, bin string) *qv1.QWorker {
	cmd := []string{bin, "demo-worker", "--redis", env.RedisAddr, "--queue", p.queue, "--results", p.results, "--task-time", wtTaskTime.String()}
	qw := sdkQWorker(ns, p.name, p.queue, cmd, []corev1.EnvVar{
		{Name: "REDIS_ADDR", Value: env.RedisAddr}, {Name: stats.EnvInterval, Value: wtStatsEvery},
	}, wtMaxR)
	qw.Spec.ScaleConfig.ScalingFactor = p.factor
	qw.Spec.ScaleConfig.TargetWaitSeconds = p.wait
	qw.Spec.ScaleConfig.Retirement.MaxSurge = nil
	return qw
}

// wtPush pushes the load to every pool's queue at once, each task body
// "<phase>-<seq>@<enqueue Unix ns>", and returns the tasks per queue.
func wtPush(ctx context.Context, t *testing.T, rdb *redis.Client, pools []*wtPool) int {
	t.Helper()
	seq := 0
	push := func(phase string, n int) {
		if n == 0 {
			return
		}
		bodies := make([]any, n)
		now := time.Now().UnixNano()
		for i := range bodies {
			bodies[i] = fmt.Sprintf("%s-%06d@%d", phase, seq, now)
			seq++
		}
		pipe := rdb.Pipeline()
		for _, p := range pools {
			pipe.LPush(ctx, p.queue, bodies...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatalf("push tasks: %v", err)
		}
	}
	const tick = 100 * time.Millisecond
	for _, ph := range wtLoad {
		push(ph.name, ph.burst)
		acc := 0.0
		phaseStart := time.Now()
		for next := phaseStart.Add(tick); ; next = next.Add(tick) {
			select {
			case <-ctx.Done():
				t.Fatal("load interrupted")
			case <-time.After(time.Until(next)):
			}
			el := time.Since(phaseStart)
			if el > ph.d {
				break
			}
			rate := ph.from + (ph.to-ph.from)*el.Seconds()/ph.d.Seconds()
			acc += rate * tick.Seconds()
			n := int(acc)
			acc -= float64(n)
			push(ph.name, n)
		}
	}
	return seq
}

// wtSample counts each pool's pods (all not finished, terminating ones
// too: they still cost) every half second, and records the wait-target
// pool's status.waitModel, until ctx ends.
func wtSample(ctx context.Context, c client.Client, ns string, pools []*wtPool, tail *atomic.Bool) {
	const every = 500 * time.Millisecond
	last := time.Now()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		list, err := env.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		now := time.Now()
		dt := now.Sub(last).Seconds()
		last = now
		for _, p := range pools {
			n := 0
			for _, pod := range list.Items {
				if pod.Labels["quickube.com/qworker"] == p.name && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
					n++
				}
			}
			p.mu.Lock()
			p.podSeconds += float64(n) * dt
			if tail.Load() {
				p.tailSeconds += float64(n) * dt
			}
			p.maxPods = max(p.maxPods, n)
			p.mu.Unlock()
			if p.wait == nil {
				continue
			}
			qw := &qv1.QWorker{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: p.name}, qw); err == nil && qw.Status.WaitModel != nil {
				p.mu.Lock()
				p.model, p.modelSeen = qw.Status.WaitModel.DeepCopy(), p.modelSeen+1
				if qw.Status.LastDecision != nil {
					p.reason = qw.Status.LastDecision.Reason
				}
				if p.peak == nil || p.model.Replicas > p.peak.Replicas {
					p.peak, p.peakReason = p.model, p.reason
				}
				p.mu.Unlock()
			}
		}
	}
}

// fmtModel prints a status.waitModel.
func fmtModel(m *qv1.WaitModel) string {
	if m == nil {
		return "none"
	}
	predicted := "unbounded"
	if m.PredictedWaitSeconds != nil {
		predicted = fmt.Sprintf("%gs", *m.PredictedWaitSeconds)
	}
	return fmt.Sprintf("arrivalRate %g/s, serviceTimeSeconds %g, concurrency %d, startupSeconds %g, replicas %d, predictedWaitSeconds %s",
		m.ArrivalRate, m.ServiceTimeSeconds, m.Concurrency, m.StartupSeconds, m.Replicas, predicted)
}

// wtCheckReports checks that the wait-target pool's live workers carry a
// valid stats annotation with work in it.
func wtCheckReports(ctx context.Context, t *testing.T, ns string) {
	t.Helper()
	pods, err := alivePods(ctx, ns, "wait")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		v, ok := p.Annotations[stats.Annotation]
		if !ok {
			continue
		}
		r, err := stats.Decode(v)
		if err != nil {
			t.Fatalf("pod %s: %v", p.Name, err)
		}
		if r.Tasks > 0 && r.BusySeconds >= float64(r.Tasks)*wtTaskTime.Seconds()*0.9 {
			return
		}
	}
	t.Fatalf("no live worker of the wait-target pool carries a %s report with its tasks' busy time", stats.Annotation)
}

// wtWaits reads each task's wait (start − enqueue, seconds) of a pool
// (its results prefix),
// overall and by load phase.
func wtWaits(ctx context.Context, t *testing.T, rdb *redis.Client, results string) ([]float64, map[string][]float64) {
	t.Helper()
	started, err := rdb.HGetAll(ctx, results+":swell:started").Result()
	if err != nil {
		t.Fatal(err)
	}
	var all []float64
	byPhase := map[string][]float64{}
	for body, at := range started {
		phase, rest, _ := strings.Cut(body, "-")
		_, enq, ok := strings.Cut(rest, "@")
		e, err1 := strconv.ParseInt(enq, 10, 64)
		s, err2 := strconv.ParseInt(at, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			t.Fatalf("task %q started %q: unreadable", body, at)
		}
		w := math.Max(float64(s-e)/1e9, 0)
		all = append(all, w)
		byPhase[phase] = append(byPhase[phase], w)
	}
	return all, byPhase
}

// wtQuantile is the q-quantile (nearest rank) of xs.
func wtQuantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}
