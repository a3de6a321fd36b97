package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/cpa"
)

// TestPodAutoscalerScalesOnRedisQueue: a PodAutoscaler whose metric is the
// backlog of a Redis list, read through a ScalerConfig as a QWorker reads
// it, scales a Deployment with "ceil(value / 5)": up as tasks arrive, down
// and to zero (minReplicas 0) as the list drains, up again from zero. While
// Redis is stopped every pass fails: Ready=False FailedGetMetrics, a Warning
// event, and the replicas held, never scaled to zero on an unknown backlog.
func TestPodAutoscalerScalesOnRedisQueue(t *testing.T) {
	ctx, kube, ns, rdb, queue := redisFixture(t, 3*time.Minute)
	createCPADeployment(ctx, t, ns, "worker", 1, "")
	pa := sourcePodAutoscaler(ns, "worker", "redis", queue)
	if err := kube.Create(ctx, pa); err != nil {
		t.Fatalf("create PodAutoscaler: %v", err)
	}
	push := func(n int) {
		t.Helper()
		for i := range n {
			if err := rdb.LPush(ctx, queue, fmt.Sprintf("task-%d", i)).Err(); err != nil {
				t.Fatalf("LPUSH: %v", err)
			}
		}
	}

	push(12)
	waitReplicas(ctx, t, ns, "worker", 3)
	waitPodAutoscaler(ctx, t, kube, ns, "worker", "lastDecision from a backlog of 12", func(pa *swellv1.PodAutoscaler) bool {
		d := pa.Status.LastDecision
		return d != nil && d.Evaluation == 3 && len(d.Inputs) == 1 && d.Inputs[0] == "worker=12"
	})
	if err := rdb.LTrim(ctx, queue, 0, 3).Err(); err != nil { // 4 left
		t.Fatal(err)
	}
	waitReplicas(ctx, t, ns, "worker", 1)
	if err := rdb.Del(ctx, queue).Err(); err != nil {
		t.Fatal(err)
	}
	waitReplicas(ctx, t, ns, "worker", 0)
	push(7)
	waitReplicas(ctx, t, ns, "worker", 2)

	stopRedisUntilCleanup(t)
	waitPodAutoscaler(ctx, t, kube, ns, "worker", "Ready=False FailedGetMetrics while Redis is down", func(pa *swellv1.PodAutoscaler) bool {
		c := meta.FindStatusCondition(pa.Status.Conditions, "Ready")
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == cpa.ReasonFailedGetMetrics
	})
	waitPodAutoscalerEvent(ctx, t, ns, "worker", cpa.ReasonFailedGetMetrics)
	time.Sleep(3 * time.Second) // three more 1 s passes while Redis is down
	if n := replicasOf(ctx, t, ns, "worker"); n != 2 {
		t.Fatalf("replicas = %d while Redis was down, want the 2 held", n)
	}
	if got := waitPodAutoscaler(ctx, t, kube, ns, "worker", "still failing", notReady); got.Status.DesiredReplicas != 2 {
		t.Fatalf("status.desiredReplicas = %d while Redis was down, want 2 kept", got.Status.DesiredReplicas)
	}

	if err := env.RestartComponent(ctx, "redis", env.RedisReady()); err != nil {
		t.Fatal(err)
	}
	// Redis restarts empty (no persistence): backlog 0 → scale to zero.
	waitReplicas(ctx, t, ns, "worker", 0)
	waitPodAutoscaler(ctx, t, kube, ns, "worker", "Ready=True after Redis is back", func(pa *swellv1.PodAutoscaler) bool {
		return meta.IsStatusConditionTrue(pa.Status.Conditions, "Ready")
	})
}

// TestPodAutoscalerMissingScalerConfigHolds: a source naming a ScalerConfig
// that does not exist fails every pass with the name in the condition; the
// target keeps its replicas.
func TestPodAutoscalerMissingScalerConfigHolds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kube := startController(t)
	ns := newNamespace(ctx, t)
	createCPADeployment(ctx, t, ns, "orphan", 2, "")
	if err := kube.Create(ctx, sourcePodAutoscaler(ns, "orphan", "nowhere", "q")); err != nil {
		t.Fatalf("create PodAutoscaler: %v", err)
	}
	got := waitPodAutoscaler(ctx, t, kube, ns, "orphan", "Ready=False FailedGetMetrics", notReady)
	c := meta.FindStatusCondition(got.Status.Conditions, "Ready")
	if c.Reason != cpa.ReasonFailedGetMetrics || !containsAll(c.Message, "ScalerConfig", "nowhere") {
		t.Fatalf("Ready condition %s: %q, want FailedGetMetrics naming ScalerConfig nowhere", c.Reason, c.Message)
	}
	if n := replicasOf(ctx, t, ns, "orphan"); n != 2 {
		t.Fatalf("replicas = %d, want 2 held", n)
	}
}

// sourcePodAutoscaler scales target on the backlog of queue, read through
// the ScalerConfig scalerConfig: one replica per five tasks, down to zero.
func sourcePodAutoscaler(ns, target, scalerConfig, queue string) *swellv1.PodAutoscaler {
	pa := newPodAutoscaler(ns, target, cpa.PerResource, swellv1.EvaluateMethod{Expression: "ceil(value / 5)"}, "")
	pa.Spec.MinReplicas = 0
	pa.Spec.Metric = swellv1.MetricMethod{Source: &swellv1.QueueSource{ScalerConfigRef: scalerConfig, Queue: queue}}
	return pa
}

func notReady(pa *swellv1.PodAutoscaler) bool {
	c := meta.FindStatusCondition(pa.Status.Conditions, "Ready")
	return c != nil && c.Status == metav1.ConditionFalse
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// stopRedisUntilCleanup stops the shared Redis and makes sure it runs again
// when the test ends, whatever happens, so later tests find it.
func stopRedisUntilCleanup(t *testing.T) {
	t.Helper()
	if err := env.StopComponent("redis"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if env.RedisReady()(ctx) == nil {
			return
		}
		if err := env.RestartComponent(ctx, "redis", env.RedisReady()); err != nil {
			t.Errorf("restart redis: %v", err)
		}
	})
}

// validPodAutoscaler is a minimal PodAutoscaler manifest with a queue
// source, for the CRD validation cases.
func validPodAutoscaler() obj {
	return obj{
		"apiVersion": "swell.dev/v1alpha1", "kind": "PodAutoscaler",
		"metadata": map[string]any{"name": "v"},
		"spec": map[string]any{
			"scaleTargetRef": map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
			"metric":         map[string]any{"source": map[string]any{"scalerConfigRef": "redis", "queue": "tasks"}},
			"evaluate":       map[string]any{"expression": "ceil(value / 5)"},
		},
	}
}

// TestPodAutoscalerHandsExternalMetricsToItsMethod: a PodAutoscaler's
// kubernetesMetricSpecs are read from the real external.metrics.k8s.io
// (the test metrics adapter behind the aggregation layer) and reach its
// http metric method in CPA's JSON; the method answers the value and the
// expression scales on it.
func TestPodAutoscalerHandsExternalMetricsToItsMethod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kube := startController(t)
	ns := newNamespace(ctx, t)
	env.CustomMetrics.SetExternalMetric(ns, "backlog", map[string]string{"queue": "orders"}, resource.MustParse("30"))
	env.CustomMetrics.SetExternalMetric(ns, "backlog", map[string]string{"queue": "other"}, resource.MustParse("999"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in cpa.MetricInfo
		if err := json.Unmarshal([]byte(r.URL.Query().Get("value")), &in); err != nil {
			http.Error(w, "want CPA's metric JSON in ?value=", http.StatusBadRequest)
			return
		}
		if len(in.KubernetesMetrics) != 1 || in.KubernetesMetrics[0].External == nil || in.KubernetesMetrics[0].External.Current.Value == nil {
			http.Error(w, "want one external metric in kubernetesMetrics", http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, *in.KubernetesMetrics[0].External.Current.Value/1000)
	}))
	defer srv.Close()
	createCPADeployment(ctx, t, ns, "orders", 1, "")
	pa := newPodAutoscaler(ns, "orders", cpa.PerResource, swellv1.EvaluateMethod{Expression: "ceil(value / 10)"}, srv.URL)
	pa.Spec.KubernetesMetricSpecs = []autoscalingv2.MetricSpec{{
		Type: autoscalingv2.ExternalMetricSourceType,
		External: &autoscalingv2.ExternalMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "backlog", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"queue": "orders"}}},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: ptr.To(resource.MustParse("10"))},
		},
	}}
	if err := kube.Create(ctx, pa); err != nil {
		t.Fatalf("create PodAutoscaler: %v", err)
	}
	waitReplicas(ctx, t, ns, "orders", 3)
	waitPodAutoscaler(ctx, t, kube, ns, "orders", "inputs from the queue=orders series only", func(pa *swellv1.PodAutoscaler) bool {
		d := pa.Status.LastDecision
		return d != nil && len(d.Inputs) == 1 && d.Inputs[0] == "orders=30"
	})
	env.CustomMetrics.SetExternalMetric(ns, "backlog", map[string]string{"queue": "orders"}, resource.MustParse("55"))
	waitReplicas(ctx, t, ns, "orders", 6)
}

// TestPodAutoscalerWakesOnRedisPush: a PodAutoscaler polling a Redis list
// only every 300 s scales its Deployment from zero within seconds of tasks
// being pushed, which only the keyspace-notification wake-up can do. Above
// zero a push waits for the interval (the wake-up is for scale-from-zero);
// switching the queue moves the subscription to the new list, which then
// wakes it from zero again; deleting the PodAutoscaler ends the
// subscription.
func TestPodAutoscalerWakesOnRedisPush(t *testing.T) {
	kube := startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	defer func() { _ = rdb.Close() }()
	sc := redisScalerConfig(ns, "redis", env.RedisAddr)
	sc.Spec.Config.KeyspaceNotifications = true
	if err := kube.Create(ctx, sc); err != nil {
		t.Fatal(err)
	}
	queue, queue2 := ns+"-tasks", ns+"-other"
	createCPADeployment(ctx, t, ns, "worker", 0, "")
	pa := sourcePodAutoscaler(ns, "worker", "redis", queue)
	pa.Spec.IntervalSeconds = 300
	if err := kube.Create(ctx, pa); err != nil {
		t.Fatalf("create PodAutoscaler: %v", err)
	}
	// subscribers counts the controller's keyspace subscriptions to a list.
	subscribers := func(key string) int64 {
		t.Helper()
		ch := "__keyspace@0__:" + key
		n, err := rdb.PubSubNumSub(ctx, ch).Result()
		if err != nil {
			t.Fatalf("PUBSUB NUMSUB: %v", err)
		}
		return n[ch]
	}
	waitSubscribers := func(key string, want func(int64) bool, what string) {
		t.Helper()
		waitFor(ctx, t, what, func() (bool, error) { return want(subscribers(key)), nil })
	}
	// withinPoll bounds a wait well inside the 300 s interval: anything
	// seen in it came from a wake-up, not from the poll.
	withinPoll := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		t.Cleanup(cancel)
		return c
	}

	waitPodAutoscaler(ctx, t, kube, ns, "worker", "a first pass at zero on an empty list", func(pa *swellv1.PodAutoscaler) bool {
		d := pa.Status.LastDecision
		return d != nil && d.Desired == 0 && len(d.Inputs) == 1 && d.Inputs[0] == "worker=0"
	})
	waitSubscribers(queue, func(n int64) bool { return n > 0 }, "the keyspace subscription to "+queue)

	pushed := time.Now()
	if err := rdb.LPush(ctx, queue, "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "t10", "t11", "t12").Err(); err != nil {
		t.Fatalf("LPUSH: %v", err)
	}
	waitReplicas(withinPoll(), t, ns, "worker", 3)
	t.Logf("0 → 3 replicas %v after the LPUSH, with a 300 s interval", time.Since(pushed).Round(time.Millisecond))
	waitPodAutoscaler(ctx, t, kube, ns, "worker", "lastDecision from the backlog of 12", func(pa *swellv1.PodAutoscaler) bool {
		d := pa.Status.LastDecision
		return d != nil && d.Desired == 3 && len(d.Inputs) == 1 && d.Inputs[0] == "worker=12"
	})

	// Above zero the interval governs: more tasks wake nothing.
	time.Sleep(2 * time.Second) // let any wake-up queued during the scale-up run
	if err := rdb.LPush(ctx, queue, "t13", "t14", "t15", "t16", "t17", "t18").Err(); err != nil {
		t.Fatalf("LPUSH: %v", err)
	}
	time.Sleep(3 * time.Second)
	if n := replicasOf(ctx, t, ns, "worker"); n != 3 {
		t.Fatalf("replicas = %d after a push above zero, want 3 until the next interval pass", n)
	}
	got := waitPodAutoscaler(ctx, t, kube, ns, "worker", "readable", func(*swellv1.PodAutoscaler) bool { return true })
	if d := got.Status.LastDecision; d == nil || len(d.Inputs) != 1 || d.Inputs[0] != "worker=12" {
		t.Fatalf("lastDecision %+v after a push above zero, want the pass at 12 to be the last", d)
	}

	// A new queue: the subscription follows it, and the empty list scales
	// the target to zero on the generation's first pass.
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.Metric.Source.Queue = queue2
	if err := kube.Patch(ctx, got, patch); err != nil {
		t.Fatalf("patch queue: %v", err)
	}
	waitReplicas(ctx, t, ns, "worker", 0)
	waitSubscribers(queue, func(n int64) bool { return n == 0 }, "the subscription to "+queue+" to end")
	waitSubscribers(queue2, func(n int64) bool { return n > 0 }, "the keyspace subscription to "+queue2)
	if err := rdb.LPush(ctx, queue2, "u1", "u2", "u3", "u4", "u5", "u6", "u7").Err(); err != nil {
		t.Fatalf("LPUSH: %v", err)
	}
	waitReplicas(withinPoll(), t, ns, "worker", 2)

	if err := kube.Delete(ctx, got); err != nil {
		t.Fatalf("delete PodAutoscaler: %v", err)
	}
	waitSubscribers(queue2, func(n int64) bool { return n == 0 }, "the subscription to end with the PodAutoscaler")
}
