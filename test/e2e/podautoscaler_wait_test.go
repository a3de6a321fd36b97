package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"k8s.io/utils/ptr"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
)

// TestPodAutoscalerWaitTargetOnRedisStream: a PodAutoscaler whose Redis
// stream source has targetWaitSeconds 5 and serviceTimeSeconds 1 answers
// the wait model's replica count ("value"). Once the model knows the
// arrival rate (an idle queue: about 0/s), 20 entries stamped a minute ago
// arrive at once: the oldest is 12× the target late, so the model must
// start all 20 within about one service time and asks for ≥ 15 workers,
// where without the age (20 tasks within 4 s, plus 1 steady) it is 6.
// When a worker takes and acknowledges them all, the pool shrinks again.
func TestPodAutoscalerWaitTargetOnRedisStream(t *testing.T) {
	ctx, kube, ns, rdb, stream := redisFixture(t, 4*time.Minute)
	if err := rdb.XGroupCreateMkStream(ctx, stream, "workers", "$").Err(); err != nil {
		t.Fatal(err)
	}
	createCPADeployment(ctx, t, ns, "waiter", 1, "")
	pa := newPodAutoscaler(ns, "waiter", "per-resource", swellv1.EvaluateMethod{Expression: "value"}, "")
	pa.Spec.MinReplicas, pa.Spec.MaxReplicas = 0, 30
	pa.Spec.Metric = swellv1.MetricMethod{Source: &swellv1.QueueSource{
		ScalerConfigRef: "redis", Queue: stream + "?group=workers",
		TargetWaitSeconds: ptr.To(5.0), ServiceTimeSeconds: ptr.To(1.0),
	}}
	if err := kube.Create(ctx, pa); err != nil {
		t.Fatalf("create PodAutoscaler: %v", err)
	}
	waitPodAutoscaler(ctx, t, kube, ns, "waiter", "the wait model known on the idle queue", func(pa *swellv1.PodAutoscaler) bool {
		d := pa.Status.LastDecision
		return d != nil && strings.HasPrefix(d.Reason, "wait target: arrivals")
	})

	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	old := now.Add(-time.Minute).UnixMilli()
	for i := range 20 {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: fmt.Sprintf("%d-%d", old, i), Values: []string{"n", "1"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	got := waitPodAutoscaler(ctx, t, kube, ns, "waiter", "≥ 15 workers for 20 late tasks", func(pa *swellv1.PodAutoscaler) bool {
		d := pa.Status.LastDecision
		return d != nil && d.Evaluation >= 15
	})
	d := got.Status.LastDecision
	if !strings.Contains(d.Reason, "to drain backlog 20") || d.Inputs[0] != fmt.Sprintf("waiter=%d", d.Evaluation) {
		t.Fatalf("lastDecision %+v: want the model's reason for backlog 20 and the answer as the input", d)
	}
	t.Logf("late backlog: evaluation %d: %s", d.Evaluation, d.Reason)
	waitFor(ctx, t, "deployment waiter at ≥ 15 replicas", func() (bool, error) { return replicasOf(ctx, t, ns, "waiter") >= 15, nil })

	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "workers", Consumer: "w", Streams: []string{stream, ">"}, Count: 20, Block: -1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range res[0].Messages {
		if err := rdb.XAck(ctx, stream, "workers", m.ID).Err(); err != nil {
			t.Fatal(err)
		}
	}
	got = waitPodAutoscaler(ctx, t, kube, ns, "waiter", "shrunk after the backlog drained", func(pa *swellv1.PodAutoscaler) bool {
		d := pa.Status.LastDecision
		return d != nil && d.Desired <= 3
	})
	t.Logf("drained: desired %d: %s", got.Status.LastDecision.Desired, got.Status.LastDecision.Reason)
}
