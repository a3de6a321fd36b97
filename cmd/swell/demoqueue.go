package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	natssource "github.com/swell-autoscaler/swell/pkg/source/nats"
	"github.com/swell-autoscaler/swell/sdk/go/queue/kafkaq"
	"github.com/swell-autoscaler/swell/sdk/go/queue/natsq"
	"github.com/swell-autoscaler/swell/sdk/go/queue/rabbitq"
	"github.com/swell-autoscaler/swell/sdk/go/queue/redisq"
	"github.com/swell-autoscaler/swell/sdk/go/worker"
)

// The brokers `swell demo-worker --broker` accepts.
const (
	brokerRedis    = "redis"
	brokerRabbitMQ = "rabbitmq"
	brokerNATS     = "nats"
	brokerKafka    = "kafka"
)

// demoQueue is the demo worker's consumer on its broker, how to release
// it, and a channel that yields when the broker connection is gone for
// good (the worker then exits so its container restarts).
type demoQueue struct {
	queue worker.Queue
	close func()
	lost  <-chan error
}

// openDemoQueue connects the consumer o.broker names. rdb is the results
// store, which is also the queue for --broker redis.
func openDemoQueue(ctx context.Context, o demoWorkerOptions, id worker.Identity, rdb *redis.Client, log *slog.Logger) (demoQueue, error) {
	switch o.broker {
	case brokerRedis:
		return openRedisQueue(ctx, o, id, rdb, log)
	case brokerRabbitMQ:
		return openRabbitQueue(o, log)
	case brokerNATS:
		return openNATSQueue(ctx, o, log)
	case brokerKafka:
		return openKafkaQueue(o, log)
	}
	return demoQueue{}, fmt.Errorf("--broker %q: want redis, rabbitmq, nats or kafka", o.broker)
}

// openRedisQueue opens the reliable list consumer: it registers the
// worker, keeps its heartbeat, and moves the tasks of this QWorker's dead
// workers back onto the list (at start and periodically).
func openRedisQueue(ctx context.Context, o demoWorkerOptions, id worker.Identity, rdb *redis.Client, log *slog.Logger) (demoQueue, error) {
	q, err := redisq.Open(ctx, rdb, o.queue, redisq.Options{
		Owner: id.Namespace + "/" + id.QWorker, Pod: id.Pod, MaxAttempts: o.maxAttempts, Logger: log,
	})
	if err != nil {
		return demoQueue{}, err
	}
	closeQ := func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := q.Close(cctx); err != nil {
			log.Warn("close redis queue", "err", err)
		}
	}
	return demoQueue{queue: q, close: closeQ}, nil
}

func openRabbitQueue(o demoWorkerOptions, log *slog.Logger) (demoQueue, error) {
	if o.rabbitURL == "" {
		return demoQueue{}, errors.New("--rabbitmq-url (or RABBITMQ_URL) is required")
	}
	conn, err := amqp.Dial(o.rabbitURL)
	if err != nil {
		return demoQueue{}, fmt.Errorf("connect to rabbitmq: %w", err) // amqp errors carry no credentials
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return demoQueue{}, fmt.Errorf("rabbitmq channel: %w", err)
	}
	q, err := rabbitq.New(ch, o.queue, rabbitq.Options{Prefetch: o.prefetch, MaxAttempts: o.maxAttempts, Logger: log})
	if err != nil {
		_ = conn.Close()
		return demoQueue{}, err
	}
	lost := make(chan error, 1)
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		if reason, ok := <-closed; ok && reason != nil {
			lost <- fmt.Errorf("rabbitmq connection closed: %w", reason)
		}
	}()
	return demoQueue{queue: q, close: func() { _ = conn.Close() }, lost: lost}, nil
}

func openNATSQueue(ctx context.Context, o demoWorkerOptions, log *slog.Logger) (demoQueue, error) {
	if o.natsURL == "" {
		return demoQueue{}, errors.New("--nats-url (or NATS_URL) is required")
	}
	ref, err := natssource.ParseQueueRef(o.queue)
	if err != nil {
		return demoQueue{}, err
	}
	if ref.Stream == "" {
		return demoQueue{}, fmt.Errorf("--queue %q: want <stream>/<consumer>", o.queue)
	}
	lost := make(chan error, 1)
	nc, err := natsgo.Connect(o.natsURL, natsgo.ClosedHandler(func(*natsgo.Conn) {
		lost <- errors.New("nats connection closed")
	}))
	if err != nil {
		return demoQueue{}, fmt.Errorf("connect to nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return demoQueue{}, fmt.Errorf("jetstream: %w", err)
	}
	q, err := natsq.New(ctx, js, ref.Stream, ref.Consumer, natsq.Options{AckWait: o.ackWait, MaxDeliver: o.maxAttempts, Logger: log})
	if err != nil {
		nc.Close()
		return demoQueue{}, err
	}
	// Close is ours: drop the handler's report of it.
	return demoQueue{queue: q, close: func() { nc.SetClosedHandler(nil); nc.Close() }, lost: lost}, nil
}

func openKafkaQueue(o demoWorkerOptions, log *slog.Logger) (demoQueue, error) {
	if o.kafkaBrokers == "" || o.kafkaGroup == "" {
		return demoQueue{}, errors.New("--kafka-brokers (or KAFKA_BROKERS) and --kafka-group are required")
	}
	var extra []kgo.Opt
	if o.kafkaLogLevel != "" {
		lvl, err := kafkaLogLevel(o.kafkaLogLevel)
		if err != nil {
			return demoQueue{}, err
		}
		extra = append(extra, kgo.WithLogger(kgo.BasicLogger(os.Stderr, lvl, nil)))
	}
	q, err := kafkaq.New(kafkaq.Options{
		Brokers: strings.Split(o.kafkaBrokers, ","), Topic: o.queue, Group: o.kafkaGroup, SessionTimeout: o.sessionTimeout,
		Protocol: kafkaq.GroupProtocol(o.kafkaProtocol), RebalanceTimeout: o.rebalance, MaxAttempts: o.maxAttempts, Logger: log,
	}, extra...)
	if err != nil {
		return demoQueue{}, err
	}
	leave := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = q.Close(ctx)
	}
	return demoQueue{queue: q, close: leave}, nil
}

// kafkaLogLevel parses --kafka-log-level.
func kafkaLogLevel(s string) (kgo.LogLevel, error) {
	for _, l := range []kgo.LogLevel{kgo.LogLevelError, kgo.LogLevelWarn, kgo.LogLevelInfo, kgo.LogLevelDebug} {
		if strings.EqualFold(s, l.String()) {
			return l, nil
		}
	}
	return kgo.LogLevelNone, fmt.Errorf("--kafka-log-level %q: want error, warn, info or debug", s)
}
