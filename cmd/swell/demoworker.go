package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/swell-autoscaler/swell/sdk/go/worker"
)

// demoWorkerOptions are the flags of `swell demo-worker`.
type demoWorkerOptions struct {
	broker         string
	redisAddr      string
	rabbitURL      string
	prefetch       int
	natsURL        string
	ackWait        time.Duration
	kafkaBrokers   string
	kafkaGroup     string
	sessionTimeout time.Duration
	rebalance      time.Duration
	kafkaLogLevel  string
	kafkaProtocol  string
	queue          string
	results        string
	taskTime       time.Duration
	settleTimeout  time.Duration
	maxAttempts    int
	failPrefix     string
	slowPrefix     string
	slowTime       time.Duration
}

// newDemoWorkerCmd is the sample worker of the demo and the e2e tests: a real
// program built on the Go SDK that takes tasks from a Redis list, a RabbitMQ
// queue, a NATS JetStream consumer or a Kafka topic, "works" for a fixed
// time, and records each finished task in Redis (whatever the broker) so
// tests count lost and duplicated tasks one way.
func newDemoWorkerCmd() *cobra.Command {
	o := demoWorkerOptions{}
	cmd := &cobra.Command{
		Use:   "demo-worker",
		Short: "Sample queue worker (Go SDK; Redis, RabbitMQ, NATS or Kafka) used by the demo and the tests",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemoWorker(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.broker, "broker", brokerRedis, "broker to consume: redis, rabbitmq, nats or kafka")
	f.StringVar(&o.redisAddr, "redis", os.Getenv("REDIS_ADDR"), "Redis address (host:port) of the results store and of --broker redis; default $REDIS_ADDR")
	f.StringVar(&o.rabbitURL, "rabbitmq-url", os.Getenv("RABBITMQ_URL"), "RabbitMQ amqp:// URL; default $RABBITMQ_URL")
	f.IntVar(&o.prefetch, "prefetch", 1, "RabbitMQ prefetch (unacknowledged messages held)")
	f.StringVar(&o.natsURL, "nats-url", os.Getenv("NATS_URL"), "NATS URL; default $NATS_URL")
	f.DurationVar(&o.ackWait, "ack-wait", 0, "NATS ack wait when the worker creates the consumer (0: server default)")
	f.StringVar(&o.kafkaBrokers, "kafka-brokers", os.Getenv("KAFKA_BROKERS"), "Kafka seed brokers, comma-separated; default $KAFKA_BROKERS")
	f.StringVar(&o.kafkaGroup, "kafka-group", "", "Kafka consumer group of the workers")
	f.DurationVar(&o.sessionTimeout, "kafka-session-timeout", 10*time.Second, "Kafka group session timeout (how soon a dead worker's partitions move); classic protocol only, with KIP-848 the broker decides")
	f.DurationVar(&o.rebalance, "kafka-rebalance-timeout", 0, "Kafka classic-protocol rebalance timeout (how long a rebalance, and an ack during one, may wait); 0: the client's default, 60s")
	f.StringVar(&o.kafkaProtocol, "kafka-group-protocol", "classic", "Kafka consumer-group protocol: classic, or consumer (KIP-848, Kafka 4.0+)")
	f.StringVar(&o.kafkaLogLevel, "kafka-log-level", os.Getenv("KAFKA_LOG_LEVEL"), "log the Kafka client's group and fetch events to stderr at this level: error, warn, info or debug (default none)")
	f.StringVar(&o.queue, "queue", "tasks", "Redis list, RabbitMQ queue, NATS <stream>/<consumer> or Kafka topic to consume")
	f.StringVar(&o.results, "results", "", "prefix of the Redis keys recording finished tasks (<results>:swell:done, <results>:swell:times, <results>:swell:pods, start times in <results>:swell:started, the pod that took each --slow-prefix task in <results>:swell:taken); default the queue name")
	f.DurationVar(&o.settleTimeout, "settle-timeout", 0, "how long acknowledging or handing back a task may take; 0: what the broker needs (a classic-protocol Kafka group holds commits while it rebalances: its rebalance timeout plus 10s), else 10s")
	f.DurationVar(&o.taskTime, "task-time", time.Second, "how long each task takes")
	f.IntVar(&o.maxAttempts, "max-attempts", 0, "failures after which a task is dead-lettered (Redis: the list <queue>:dead; RabbitMQ: the exchange <queue>.dlx, queue <queue>.dead; NATS: MaxDeliver, then terminated; Kafka: the topic <topic>.dead); 0: the SDK's default")
	f.StringVar(&o.slowPrefix, "slow-prefix", "", "tasks whose body starts with this take --slow-time instead of --task-time")
	f.DurationVar(&o.slowTime, "slow-time", time.Minute, "how long each --slow-prefix task takes")
	f.StringVar(&o.failPrefix, "fail-prefix", "", "tasks whose body starts with this always fail (poison messages, for tests); each failure is counted in <results>:swell:failed")

	return cmd
}

// doneKeys are where the demo worker records finished tasks: a set of task
// bodies, a hash counting how often each was finished, and a hash counting
// each pod's finished tasks (tests pick workers that are busy from it). It
// also records in <results>:swell:started when each task started (Unix ns).
func doneKeys(results string) (set, times, pods string) {
	return results + ":swell:done", results + ":swell:times", results + ":swell:pods"
}

func runDemoWorker(ctx context.Context, o demoWorkerOptions) error {
	if o.redisAddr == "" {
		return fmt.Errorf("--redis (or REDIS_ADDR) is required")
	}
	id, err := worker.IdentityFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	cfg, err := kubeConfig()
	if err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: o.redisAddr})
	defer func() { _ = rdb.Close() }()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	dq, err := openDemoQueue(ctx, o, id, rdb, log)
	if err != nil {
		return err
	}
	defer dq.close()
	w, err := worker.New(id, cfg, dq.queue, worker.Options{Logger: log, SettleTimeout: o.settleTimeout})
	if err != nil {
		return err
	}
	ctx, lost := exitOnLost(ctx, dq.lost)
	results := o.results
	if results == "" {
		results = o.queue
	}
	set, times, pods := doneKeys(results)
	reason, err := w.Run(ctx, func(ctx context.Context, body []byte) error {
		started := time.Now()
		took := o.taskTime
		if o.slowPrefix != "" && strings.HasPrefix(string(body), o.slowPrefix) {
			took = o.slowTime
			// Which pod holds a slow task, for tests that remove it mid-task
			// on brokers that do not say who holds a message.
			if err := rdb.HSet(ctx, results+":swell:taken", string(body), id.Pod).Err(); err != nil {
				return fmt.Errorf("record taken task: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err() // SIGTERM mid-task: hand the task back
		case <-time.After(took):
		}
		if o.failPrefix != "" && strings.HasPrefix(string(body), o.failPrefix) {
			rdb.HIncrBy(context.WithoutCancel(ctx), results+":swell:failed", string(body), 1)
			return fmt.Errorf("task %.40s: fails always (--fail-prefix)", body)
		}
		_, err := rdb.TxPipelined(context.WithoutCancel(ctx), func(p redis.Pipeliner) error {
			p.SAdd(ctx, set, body)
			p.HIncrBy(ctx, times, string(body), 1)
			p.HIncrBy(ctx, pods, id.Pod, 1)
			// When the task started, for tests that measure waits
			// (enqueue time in the body to start).
			p.HSet(ctx, results+":swell:started", string(body), started.UnixNano())
			return nil
		})
		return err
	})
	log.Info("worker exits", "reason", reason, "err", err)
	if err == nil {
		err = lost()
	}
	return err
}

// exitOnLost cancels the returned context when the broker connection is
// lost for good, so the worker exits (and its container restarts) rather
// than retrying a dead consumer; the returned func says what was lost.
func exitOnLost(ctx context.Context, lost <-chan error) (context.Context, func() error) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case err := <-lost:
			cancel(err)
		case <-ctx.Done():
		}
	}()
	return ctx, func() error {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return cause
		}
		return nil
	}
}

// kubeConfig prefers $KUBECONFIG (process nodes, local runs), else the
// in-cluster service account.
func kubeConfig() (*rest.Config, error) {
	if path := os.Getenv("KUBECONFIG"); path != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster config (set KUBECONFIG outside a cluster): %w", err)
	}
	return cfg, nil
}
