package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/swell-autoscaler/swell/internal/testenv"
)

func TestRedisAcceptsAndReturnsAMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	defer func() { _ = rdb.Close() }()
	if err := rdb.LPush(ctx, "smoke", "task-1").Err(); err != nil {
		t.Fatalf("LPUSH: %v", err)
	}
	got, err := rdb.BRPop(ctx, 5*time.Second, "smoke").Result()
	if err != nil {
		t.Fatalf("BRPOP: %v", err)
	}
	if got[1] != "task-1" {
		t.Fatalf("BRPOP returned %q, want task-1", got[1])
	}
}

func TestRabbitMQAcceptsAndReturnsAMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const queue = "smoke"
	ch := testenv.RabbitQueue(t, env.RabbitMQURL, queue, true)
	if err := ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{Body: []byte("task-1")}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	var msg amqp.Delivery
	waitFor(ctx, t, "the message to be routable", func() (bool, error) {
		m, ok, err := ch.Get(queue, false)
		msg = m
		return ok, err
	})
	if string(msg.Body) != "task-1" {
		t.Fatalf("got %q, want task-1", msg.Body)
	}
	if err := msg.Ack(false); err != nil {
		t.Fatalf("ack: %v", err)
	}
}

func TestNATSJetStreamAcceptsAndReturnsAMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect(env.NATSURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SMOKE", Subjects: []string{"smoke.>"}})
	if err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := js.Publish(ctx, "smoke.tasks", []byte("task-1")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "smoke", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	if string(msg.Data()) != "task-1" {
		t.Fatalf("got %q, want task-1", msg.Data())
	}
	if err := msg.Ack(); err != nil {
		t.Fatalf("ack: %v", err)
	}
}

func TestKafkaAcceptsAndReturnsAMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := kgo.NewClient(kgo.SeedBrokers(env.KafkaAddrs...))
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer admin.Close()
	if _, err := kadm.NewClient(admin).CreateTopic(ctx, 1, 1, nil, "smoke"); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	if err := admin.ProduceSync(ctx, &kgo.Record{Topic: "smoke", Value: []byte("task-1")}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	consumer, err := kgo.NewClient(kgo.SeedBrokers(env.KafkaAddrs...), kgo.ConsumeTopics("smoke"),
		kgo.ConsumerGroup("smoke"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	defer consumer.Close()
	fetches := consumer.PollFetches(ctx)
	if errs := fetches.Errors(); len(errs) > 0 {
		t.Fatalf("poll: %v", errs[0].Err)
	}
	recs := fetches.Records()
	if len(recs) != 1 || string(recs[0].Value) != "task-1" {
		t.Fatalf("got %d records (first %q), want one task-1", len(recs), firstValue(recs))
	}
	if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func firstValue(recs []*kgo.Record) string {
	if len(recs) == 0 {
		return ""
	}
	return string(recs[0].Value)
}
