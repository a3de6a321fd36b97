package externalscaler_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
	goredis "github.com/redis/go-redis/v9"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/externalscaler"
	pb "github.com/swell-autoscaler/swell/pkg/externalscaler/proto"
	"github.com/swell-autoscaler/swell/pkg/externalscaler/scalertest"
)

// queueCase is one broker queue measured through the server: how to fill
// and empty it, and which testenv component to stop.
type queueCase struct {
	name      string
	metadata  map[string]string
	metric    string
	enqueue   func(ctx context.Context, n int) error
	drain     func(ctx context.Context) error
	component string
	ready     func(context.Context) error
}

// TestQueueSourcesOnRealBrokers measures a Redis list, a RabbitMQ queue
// (AMQP plus the management API) and a NATS JetStream consumer through one
// server and its generated client: the backlog rises when work is
// enqueued, falls to 0 when it is consumed, IsActive follows; a stopped
// broker answers gRPC Unavailable (never 0), and a restarted one is
// measured again.
func TestQueueSourcesOnRealBrokers(t *testing.T) {
	env := testenv.New(t, testenv.Options{Redis: true, RabbitMQManagement: true, NATS: true})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	h := scalertest.Start(t, scalertest.Options{Tracker: externalscaler.TrackerOptions{Interval: 200 * time.Millisecond, MaxFailures: 2}})
	cases := []queueCase{redisCase(t, env), rabbitCase(t, env), natsCase(ctx, t, env)}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ref := &pb.ScaledObjectRef{Name: c.name, Namespace: "apps", ScalerMetadata: c.metadata}
			expectValue(ctx, t, h, ref, c.metric, 0, false)
			if err := c.enqueue(ctx, 25); err != nil {
				t.Fatal(err)
			}
			expectValue(ctx, t, h, ref, c.metric, 25, true)
			if err := c.drain(ctx); err != nil {
				t.Fatal(err)
			}
			expectValue(ctx, t, h, ref, c.metric, 0, false)

			// Some work waits, then the broker stops: Unavailable, and a 0
			// meanwhile would be a fake one.
			if err := c.enqueue(ctx, 4); err != nil {
				t.Fatal(err)
			}
			expectValue(ctx, t, h, ref, c.metric, 4, true)
			if err := env.StopComponent(c.component); err != nil {
				t.Fatal(err)
			}
			expectUnavailable(ctx, t, h, ref, c.metric)
			if _, err := h.Client.IsActive(ctx, ref); err == nil {
				t.Fatalf("IsActive answered while %s is down", c.component)
			}
			// Back again (what survived the restart depends on the broker's
			// persistence: drain it), measured again.
			if err := env.RestartComponent(ctx, c.component, c.ready); err != nil {
				t.Fatal(err)
			}
			eventually(t, 90*time.Second, func() error { return c.drain(ctx) })
			expectValue(ctx, t, h, ref, c.metric, 0, false)
			if err := c.enqueue(ctx, 3); err != nil {
				t.Fatal(err)
			}
			expectValue(ctx, t, h, ref, c.metric, 3, true)
		})
	}
}

func redisCase(t *testing.T, env *testenv.Env) queueCase {
	rdb := goredis.NewClient(&goredis.Options{Addr: env.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	return queueCase{
		name:     "redis",
		metadata: map[string]string{"source": "redis", "address": env.RedisAddr, "listName": "jobs", "targetSize": "5"},
		metric:   "redis-jobs",
		enqueue: func(ctx context.Context, n int) error {
			for i := range n {
				if err := rdb.LPush(ctx, "jobs", fmt.Sprintf("job-%d", i)).Err(); err != nil {
					return fmt.Errorf("LPUSH: %w", err)
				}
			}
			return nil
		},
		drain: func(ctx context.Context) error {
			for {
				_, err := rdb.RPop(ctx, "jobs").Result()
				if errors.Is(err, goredis.Nil) {
					return nil
				}
				if err != nil {
					return fmt.Errorf("RPOP: %w", err)
				}
			}
		},
		component: "redis",
		ready:     env.RedisReady(),
	}
}

// withChannel runs f on a channel of a fresh AMQP connection, closed when f
// returns, so enqueue and drain work again after a broker restart. Unlike
// testenv.RabbitChannel, which fails the test and keeps its connection
// until the test ends, it returns errors (drain is retried while the broker
// comes back) and gives up dialing after 2 s.
func withChannel(rabbitURL string, f func(*amqp.Channel) error) error {
	conn, err := amqp.DialConfig(rabbitURL, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return fmt.Errorf("amqp dial: %w", err)
	}
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("amqp channel: %w", err)
	}
	return f(ch)
}

func rabbitCase(t *testing.T, env *testenv.Env) queueCase {
	u, err := url.Parse(env.RabbitMQURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := withChannel(env.RabbitMQURL, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare("jobs", true, false, false, false, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	return queueCase{
		name: "rabbitmq",
		metadata: map[string]string{"source": "rabbitmq", "host": u.Hostname(), "port": u.Port(),
			"username": u.User.Username(), "passwordFromEnv": pw, "queueName": "jobs",
			"managementURL": env.RabbitMQManagementURL, "targetSize": "20"},
		metric: "rabbitmq-jobs",
		enqueue: func(ctx context.Context, n int) error {
			return withChannel(env.RabbitMQURL, func(ch *amqp.Channel) error {
				for i := range n {
					if err := ch.PublishWithContext(ctx, "", "jobs", false, false, amqp.Publishing{Body: fmt.Appendf(nil, "job-%d", i)}); err != nil {
						return fmt.Errorf("publish: %w", err)
					}
				}
				return nil
			})
		},
		drain: func(context.Context) error {
			return withChannel(env.RabbitMQURL, func(ch *amqp.Channel) error {
				for {
					m, ok, err := ch.Get("jobs", false)
					if err != nil || !ok {
						return err
					}
					if err := m.Ack(false); err != nil {
						return fmt.Errorf("ack: %w", err)
					}
				}
			})
		},
		component: "rabbitmq",
	}
}

func natsCase(ctx context.Context, t *testing.T, env *testenv.Env) queueCase {
	js, cons := testenv.JetStreamQueue(ctx, t, env.NATSURL, "JOBS", "jobs", jetstream.ConsumerConfig{},
		nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	return queueCase{
		name:     "nats",
		metadata: map[string]string{"source": "nats", "natsURL": env.NATSURL, "stream": "JOBS", "consumer": "workers", "targetSize": "10"},
		metric:   "nats-jobs-workers",
		enqueue: func(ctx context.Context, n int) error {
			for i := range n {
				if _, err := js.Publish(ctx, "jobs.new", fmt.Appendf(nil, "job-%d", i)); err != nil {
					return fmt.Errorf("publish: %w", err)
				}
			}
			return nil
		},
		drain: func(context.Context) error {
			for {
				batch, err := cons.FetchNoWait(100)
				if err != nil {
					return fmt.Errorf("fetch: %w", err)
				}
				n := 0
				for m := range batch.Messages() {
					n++
					if err := m.Ack(); err != nil {
						return fmt.Errorf("ack: %w", err)
					}
				}
				if err := batch.Error(); err != nil {
					return fmt.Errorf("fetch: %w", err)
				}
				if n == 0 {
					return nil
				}
			}
		},
		component: "nats",
	}
}
