package e2e

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	corev1 "k8s.io/api/core/v1"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/testenv"
)

// rabbitSDKBroker is a durable RabbitMQ queue of the test's namespace.
func rabbitSDKBroker(ctx context.Context, t *testing.T, ns string) sdkBroker {
	u, err := url.Parse(env.RabbitMQURL)
	if err != nil {
		t.Fatal(err)
	}
	queue := ns + "-tasks"
	ch := testenv.RabbitQueue(t, env.RabbitMQURL, queue, true)
	pw, _ := u.User.Password()
	return sdkBroker{
		name:  "rabbitmq",
		queue: queue,
		scalerConfig: qv1.ScalerConfigSpec{Type: qv1.BrokerRabbitMQ, Config: qv1.ScalerConnection{
			Host: u.Hostname(), Port: u.Port(), Username: u.User.Username(), Password: &qv1.Password{Value: pw}}},
		enqueue: func(ctx context.Context, t *testing.T, bodies []string) {
			for _, b := range bodies {
				msg := amqp.Publishing{Body: []byte(b), MessageId: b, DeliveryMode: amqp.Persistent}
				if err := ch.PublishWithContext(ctx, "", queue, false, false, msg); err != nil {
					t.Fatal(err)
				}
			}
		},
		left: func(context.Context) (int64, error) {
			q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
			return int64(q.Messages), err
		},
		env:      []corev1.EnvVar{{Name: "RABBITMQ_URL", Value: env.RabbitMQURL}, {Name: "REDIS_ADDR", Value: env.RedisAddr}},
		demoArgs: []string{"--broker", "rabbitmq", "--queue", queue},
	}
}

// natsSDKBroker is a JetStream stream of the test's namespace with the
// durable pull consumer "workers" (explicit ack, 5 s ack wait, so tasks of
// a SIGKILLed worker come back soon).
func natsSDKBroker(ctx context.Context, t *testing.T, ns string) sdkBroker {
	stream := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(ns))
	js, cons := testenv.JetStreamQueue(ctx, t, env.NATSURL, stream, stream, jetstream.ConsumerConfig{AckWait: 5 * time.Second})
	return sdkBroker{
		name:         "nats",
		queue:        stream + "/workers",
		scalerConfig: qv1.ScalerConfigSpec{Type: qv1.BrokerNATS, Config: qv1.ScalerConnection{URL: env.NATSURL, Stream: stream}},
		enqueue: func(ctx context.Context, t *testing.T, bodies []string) {
			for i, b := range bodies {
				if _, err := js.PublishAsync(stream+".task", []byte(b)); err != nil {
					t.Fatal(err)
				}
				if i%1000 == 999 || i == len(bodies)-1 { // stay below the client's async window
					select {
					case <-js.PublishAsyncComplete():
					case <-ctx.Done():
						t.Fatal("publishing the tasks did not complete")
					}
				}
			}
		},
		left: func(ctx context.Context) (int64, error) {
			info, err := cons.Info(ctx)
			if err != nil {
				return 0, err
			}
			return int64(info.NumPending) + int64(info.NumAckPending), nil
		},
		env:      []corev1.EnvVar{{Name: "NATS_URL", Value: env.NATSURL}, {Name: "REDIS_ADDR", Value: env.RedisAddr}},
		demoArgs: []string{"--broker", "nats", "--queue", stream + "/workers"},
	}
}

// kafkaSDKBroker is a topic of the test's namespace with 8 partitions (one
// per worker at most) and the workers' consumer group, which the Go
// workers join with KIP-848's consumer group protocol.
func kafkaSDKBroker(ctx context.Context, t *testing.T, ns string) sdkBroker {
	return kafkaSDKBrokerOn(ctx, t, ns, "consumer")
}

// kafkaClassicSDKBroker is kafkaSDKBroker with the Go workers on the
// classic group protocol (kafkaq's default).
func kafkaClassicSDKBroker(ctx context.Context, t *testing.T, ns string) sdkBroker {
	b := kafkaSDKBrokerOn(ctx, t, ns, "classic")
	b.name = "kafka-classic"
	return b
}

// kafkaSDKBrokerOn makes the topic and the group; protocol is the Go
// workers' --kafka-group-protocol (the Python workers are always classic).
func kafkaSDKBrokerOn(ctx context.Context, t *testing.T, ns, protocol string) sdkBroker {
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.KafkaAddrs...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	topic, group := ns+"-tasks", ns+"-workers"
	resp, err := adm.CreateTopic(ctx, 8, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	brokers := strings.Join(env.KafkaAddrs, ",")
	return sdkBroker{
		name:         "kafka",
		queue:        topic,
		scalerConfig: qv1.ScalerConfigSpec{Type: qv1.BrokerKafka, Config: qv1.ScalerConnection{Brokers: env.KafkaAddrs, ConsumerGroup: group}},
		enqueue: func(ctx context.Context, t *testing.T, bodies []string) {
			for _, b := range bodies {
				cl.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte(b)}, nil)
			}
			if err := cl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		},
		left: func(ctx context.Context) (int64, error) { return kafkaLag(ctx, adm, topic, group) },
		env:  []corev1.EnvVar{{Name: "KAFKA_BROKERS", Value: brokers}, {Name: "REDIS_ADDR", Value: env.RedisAddr}, {Name: "KAFKA_LOG_LEVEL", Value: "info"}},
		demoArgs: []string{"--broker", "kafka", "--queue", topic, "--kafka-group", group,
			"--kafka-session-timeout", "6s", "--kafka-rebalance-timeout", "20s", "--kafka-group-protocol", protocol},
	}
}

// kafkaLag is the group's uncommitted records on topic.
func kafkaLag(ctx context.Context, adm *kadm.Client, topic, group string) (int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0, err
	}
	var lag int64
	ends.Each(func(end kadm.ListedOffset) {
		at := int64(0)
		if c, ok := committed.Lookup(topic, end.Partition); ok {
			at = c.At
		}
		lag += end.Offset - at
	})
	return lag, nil
}
