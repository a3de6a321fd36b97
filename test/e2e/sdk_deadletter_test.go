package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/sdk/go/queue/kafkaq"
	"github.com/swell-autoscaler/swell/sdk/go/queue/rabbitq"
)

// deadLetterCase is a run of the poison test: a broker's SDK fixture, the
// worker program and how to make it fail every task whose body starts with
// "poison" and dead-letter it after 3 failures, and how to read the bodies
// in the broker's dead-letter destination without consuming them.
type deadLetterCase struct {
	name   string
	broker func(ctx context.Context, t *testing.T, ns string) sdkBroker
	worker func(*testing.T, sdkBroker, string) ([]string, []corev1.EnvVar)
	poison func(cmd []string, env []corev1.EnvVar) ([]string, []corev1.EnvVar)
	dead   func(ctx context.Context, b sdkBroker) ([]string, error)
}

func goPoison(cmd []string, env []corev1.EnvVar) ([]string, []corev1.EnvVar) {
	return append(cmd, "--fail-prefix", "poison", "--max-attempts", "3"), env
}

func pythonPoison(cmd []string, env []corev1.EnvVar) ([]string, []corev1.EnvVar) {
	return cmd, append(env, corev1.EnvVar{Name: "FAIL_PREFIX", Value: "poison"}, corev1.EnvVar{Name: "MAX_ATTEMPTS", Value: "3"})
}

// TestSDKPoisonTaskDeadLettered: on RabbitMQ and Kafka (Redis has
// TestSDKRedisPoisonTaskDeadLettered), a task that always fails is tried
// maxAttempts times by Go SDK workers (and Python ones on RabbitMQ), with
// backoff, then lands in the broker's dead-letter destination (RabbitMQ:
// <queue>.dead behind the <queue>.dlx exchange; Kafka: the <topic>.dead
// topic), and every other of 1,000 tasks is done exactly once.
func TestSDKPoisonTaskDeadLettered(t *testing.T) {
	c := startController(t)
	for _, db := range []deadLetterCase{
		{name: "rabbitmq", broker: rabbitSDKBroker, worker: goDemoWorker, poison: goPoison, dead: rabbitDeadLetters},
		{name: "kafka", broker: kafkaSDKBroker, worker: goDemoWorker, poison: goPoison, dead: kafkaDeadLetters},
		{name: "python-rabbitmq", broker: rabbitSDKBroker, worker: pythonWorker("rabbitmq"), poison: pythonPoison, dead: rabbitDeadLetters},
	} {
		t.Run(db.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			ns := newNamespace(ctx, t)
			results := ns + "-results"
			rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
			defer func() { _ = rdb.Close() }()
			b := db.broker(ctx, t, ns)
			if err := c.Create(ctx, &qv1.ScalerConfig{ObjectMeta: metav1.ObjectMeta{Name: "broker", Namespace: ns}, Spec: b.scalerConfig}); err != nil {
				t.Fatal(err)
			}
			cmd, workerEnv := db.poison(db.worker(t, b, results))
			q := sdkQWorker(ns, "rec", b.queue, cmd, append(slices.Clone(b.env), workerEnv...), 3)
			// minReplicas 1: a task waiting out its backoff in a RabbitMQ
			// retry queue is not backlog the source sees.
			q.Spec.ScaleConfig.MinReplicas = 1
			if err := c.Create(ctx, q); err != nil {
				t.Fatal(err)
			}
			bodies := taskBodies(recoveryTasks)
			b.enqueue(ctx, t, []string{"poison-1"})
			b.enqueue(ctx, t, bodies)
			began := time.Now()
			var dead []string
			waitFor(ctx, t, "every task done and the poison dead-lettered", func() (bool, error) {
				n, err := rdb.SCard(ctx, results+":swell:done").Result()
				if err != nil || n != int64(len(bodies)) {
					return false, err
				}
				dead, err = db.dead(ctx, b)
				return len(dead) > 0, err
			})
			took := time.Since(began)
			if !slices.Equal(dead, []string{"poison-1"}) {
				t.Fatalf("dead letters %v, want [poison-1]", dead)
			}
			if n, _ := rdb.HGet(ctx, results+":swell:failed", "poison-1").Int(); n != 3 {
				t.Fatalf("poison-1 failed %d times, want maxAttempts = 3", n)
			}
			lost, twice := countTasks(ctx, t, rdb, results, bodies)
			if lost != 0 || twice != 0 {
				t.Fatalf("%d of %d tasks lost, %d done twice; want 0 and 0", lost, len(bodies), twice)
			}
			waitFor(ctx, t, "nothing left on the broker", func() (bool, error) {
				n, err := b.left(ctx)
				return n == 0, err
			})
			t.Logf("%s: poison-1 failed 3 times then was dead-lettered; %d other tasks: 0 lost, 0 twice; all settled %v after the push",
				db.name, len(bodies), took.Round(100*time.Millisecond))
		})
	}
}

// rabbitDeadLetters reads the bodies in <queue>.dead on a channel of its
// own, which it closes without acking, so they stay.
func rabbitDeadLetters(_ context.Context, b sdkBroker) ([]string, error) {
	conn, err := amqp.Dial(env.RabbitMQURL)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	var bodies []string
	for {
		m, ok, err := ch.Get(rabbitq.DeadLetterQueue(b.queue), false)
		if err != nil || !ok {
			return bodies, err
		}
		bodies = append(bodies, string(m.Body))
	}
}

// kafkaDeadLetters reads <topic>.dead from its start for a few seconds.
func kafkaDeadLetters(ctx context.Context, b sdkBroker) ([]string, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.KafkaAddrs...), kgo.ConsumeTopics(kafkaq.DeadLetterTopic(b.queue)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	pollCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var bodies []string
	for pollCtx.Err() == nil {
		cl.PollFetches(pollCtx).EachRecord(func(r *kgo.Record) { bodies = append(bodies, string(r.Value)) })
	}
	return bodies, nil
}
