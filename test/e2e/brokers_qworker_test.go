package e2e

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/controller/qworker"
	"github.com/swell-autoscaler/swell/internal/testenv"
)

// brokerCase is one broker under a QWorker: how a ScalerConfig reaches it,
// the QWorker's queue string, and how to fill and drain that queue.
type brokerCase struct {
	name   string
	spec   qv1.ScalerConfigSpec
	queue  string
	fill   func(ctx context.Context, t *testing.T, n int)
	drain  func(ctx context.Context, t *testing.T)
	closer func()
	// component is the testenv process to stop for the outage check, with
	// ready telling when it answers again; empty for the in-process kfake.
	component string
	ready     func(context.Context) error
}

// TestQWorkerScalesOnEveryBroker runs, for each broker: fill → ceil(n ×
// scalingFactor) pods; drain → zero; one message → back from zero; podSpec
// change → every pod replaced; broker stopped → no scale-down and
// SourceHealthy=False, then True again after a restart. (Redis has its own
// tests of each step.)
func TestQWorkerScalesOnEveryBroker(t *testing.T) {
	c := startController(t)
	for _, mk := range []func(*testing.T) brokerCase{rabbitCase, natsCase, kafkaCase} {
		bc := mk(t)
		t.Run(bc.name, func(t *testing.T) {
			if bc.closer != nil {
				defer bc.closer()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			ns := newNamespace(ctx, t)
			if err := c.Create(ctx, &qv1.ScalerConfig{ObjectMeta: metav1.ObjectMeta{Name: "redis", Namespace: ns}, Spec: bc.spec}); err != nil {
				t.Fatalf("create ScalerConfig: %v", err)
			}
			if err := c.Create(ctx, kwokQWorker(ns, "workers", bc.queue, 0, 10, 0.5)); err != nil {
				t.Fatalf("create QWorker: %v", err)
			}
			bc.fill(ctx, t, 7)
			waitForRunningPods(ctx, t, ns, "workers", 4) // ceil(7 × 0.5)
			bc.drain(ctx, t)
			waitForRunningPods(ctx, t, ns, "workers", 0)
			bc.fill(ctx, t, 1)
			waitForRunningPods(ctx, t, ns, "workers", 1)
			bc.fill(ctx, t, 4)
			before := waitForRunningPods(ctx, t, ns, "workers", 3) // ceil(5 × 0.5)
			rolloutReplacesEveryPod(ctx, t, c, ns, "workers", before)
			if bc.component == "" {
				return
			}
			if err := env.StopComponent(bc.component); err != nil {
				t.Fatal(err)
			}
			sourceHealthy(ctx, t, c, ns, "workers", metav1.ConditionFalse)
			if pods, _ := alivePods(ctx, ns, "workers"); len(pods) != 3 {
				t.Fatalf("%d pods while %s was down, want the 3 held", len(pods), bc.name)
			}
			if err := env.RestartComponent(ctx, bc.component, bc.ready); err != nil {
				t.Fatal(err)
			}
			sourceHealthy(ctx, t, c, ns, "workers", metav1.ConditionTrue)
		})
	}
}

// rabbitCase declares the durable queue the rabbitmq subtest fills and
// drains. It runs under the parent test, whose cleanup would close the
// connection only after the other brokers' subtests, so closer still closes
// it as the rabbitmq subtest ends; that cleanup then finds it closed.
func rabbitCase(t *testing.T) brokerCase {
	u, err := url.Parse(env.RabbitMQURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, ch := testenv.RabbitChannel(t, env.RabbitMQURL)
	const queue = "swell-e2e-rabbit"
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	return brokerCase{
		name:  "rabbitmq",
		queue: queue,
		// QScaler's inline password form, accepted for compatibility.
		spec: qv1.ScalerConfigSpec{Type: qv1.BrokerRabbitMQ, Config: qv1.ScalerConnection{
			Host: u.Hostname(), Port: u.Port(), Username: "guest", Password: &qv1.Password{Value: "guest"}}},
		fill: func(ctx context.Context, t *testing.T, n int) {
			for range n {
				if err := ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{Body: []byte("task")}); err != nil {
					t.Fatal(err)
				}
			}
		},
		drain: func(context.Context, *testing.T) {
			if _, err := ch.QueuePurge(queue, false); err != nil {
				t.Fatal(err)
			}
		},
		closer:    func() { _ = conn.Close() },
		component: "rabbitmq",
		ready: func(context.Context) error {
			c, err := amqp.Dial(env.RabbitMQURL)
			if err != nil {
				return err
			}
			return c.Close()
		},
	}
}

func natsCase(t *testing.T) brokerCase {
	js, cons := testenv.JetStreamQueue(context.Background(), t, env.NATSURL, "WORK", "work", jetstream.ConsumerConfig{})
	return brokerCase{
		name:  "nats",
		queue: "WORK/workers",
		spec:  qv1.ScalerConfigSpec{Type: qv1.BrokerNATS, Config: qv1.ScalerConnection{URL: env.NATSURL, Stream: "WORK"}},
		fill: func(ctx context.Context, t *testing.T, n int) {
			for range n {
				if _, err := js.Publish(ctx, "work.task", []byte("task")); err != nil {
					t.Fatal(err)
				}
			}
		},
		drain: func(ctx context.Context, t *testing.T) {
			batch, err := cons.Fetch(100, jetstream.FetchMaxWait(2*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			for m := range batch.Messages() {
				if err := m.Ack(); err != nil {
					t.Fatal(err)
				}
			}
		},
		component: "nats",
		ready: func(context.Context) error {
			c, err := nats.Connect(env.NATSURL)
			if err != nil {
				return err
			}
			c.Close()
			return nil
		},
	}
}

func kafkaCase(t *testing.T) brokerCase {
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.KafkaAddrs...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	const topic, group = "swell-e2e-work", "swell-e2e-workers"
	if _, err := adm.CreateTopic(context.Background(), 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	return brokerCase{
		name:  "kafka",
		queue: topic,
		spec:  qv1.ScalerConfigSpec{Type: qv1.BrokerKafka, Config: qv1.ScalerConnection{Brokers: env.KafkaAddrs, ConsumerGroup: group}},
		fill: func(ctx context.Context, t *testing.T, n int) {
			for range n {
				if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("task")}).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
		},
		drain: func(ctx context.Context, t *testing.T) {
			// The group catches up: commit the end offset of every partition.
			ends, err := adm.ListEndOffsets(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			offsets := kadm.Offsets{}
			ends.Each(func(o kadm.ListedOffset) {
				offsets.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: o.Offset, LeaderEpoch: -1})
			})
			if _, err := adm.CommitOffsets(ctx, group, offsets); err != nil {
				t.Fatal(err)
			}
		},
		closer: cl.Close,
	}
}

// rolloutReplacesEveryPod changes the podSpec and waits until every pod is a
// new one on the new spec hash.
func rolloutReplacesEveryPod(ctx context.Context, t *testing.T, c client.Client, ns, name string, before []corev1.Pod) {
	t.Helper()
	oldNames := map[string]bool{}
	for _, p := range before {
		oldNames[p.Name] = true
	}
	waitFor(ctx, t, "the podSpec update", func() (bool, error) {
		q := getQWorker(ctx, t, c, ns, name)
		q.Spec.PodSpec.Containers[0].Image += "-next"
		return c.Update(ctx, q) == nil, nil
	})
	waitFor(ctx, t, "every pod replaced by one with the new hash", func() (bool, error) {
		hash := getQWorker(ctx, t, c, ns, name).Status.CurrentPodSpecHash
		pods, err := alivePods(ctx, ns, name)
		if err != nil || len(pods) != len(before) || len(hash) < 63 {
			return false, err
		}
		for _, p := range pods {
			if oldNames[p.Name] || p.Labels[qworker.LabelPodSpecHash] != hash[:63] || p.Status.Phase != corev1.PodRunning {
				return false, nil
			}
		}
		return true, nil
	})
}
