package rabbitq

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/sdk/go/worker/queuetest"
)

// shared is the RabbitMQ server every test of the package uses.
var shared *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.RunPackage(m, testenv.Options{RabbitMQ: true}, 3*time.Minute, func(e *testenv.Env) { shared = e }))
}

// newQueue declares a fresh queue named for the test holding bodies.
func newQueue(t *testing.T, bodies ...string) string {
	t.Helper()
	name := "rabbitq-" + t.Name()
	ch := testenv.RabbitQueue(t, shared.RabbitMQURL, name, true)
	if _, err := ch.QueuePurge(name, false); err != nil {
		t.Fatal(err)
	}
	for _, b := range bodies {
		if err := ch.PublishWithContext(context.Background(), "", name, false, false, amqp.Publishing{Body: []byte(b)}); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

func consumer(t *testing.T, queue string, o Options) (*amqp.Connection, *Queue) {
	t.Helper()
	conn, ch := testenv.RabbitChannel(t, shared.RabbitMQURL)
	q, err := New(ch, queue, o)
	if err != nil {
		t.Fatal(err)
	}
	return conn, q
}

// TestUnackedTaskOfADeadConsumerComesBack: a consumer acks t0, dies holding
// t1; the next consumer gets t1 and t2, never t0.
func TestUnackedTaskOfADeadConsumerComesBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	queue := newQueue(t, "t0", "t1", "t2")
	connA, a := consumer(t, queue, Options{})
	if err := queuetest.Take(ctx, t, a).Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if got := string(queuetest.Take(ctx, t, a).Body()); got != "t1" {
		t.Fatalf("second task = %q, want t1", got)
	}
	_ = connA.Close() // dies without acking t1

	_, b := consumer(t, queue, Options{})
	got := queuetest.AckUntilIdle(t, b, 500*time.Millisecond)
	if fmt.Sprint(got) != "[t1 t2]" {
		t.Fatalf("next consumer took %v, want [t1 t2]: t1 again, t0 never", got)
	}
}

// TestReturnRequeuesTheTask: a returned task is the next one taken.
func TestReturnRequeuesTheTask(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	queue := newQueue(t, "t0", "t1")
	_, q := consumer(t, queue, Options{})
	if err := queuetest.Take(ctx, t, q).Return(ctx); err != nil {
		t.Fatal(err)
	}
	if got := queuetest.AckUntilIdle(t, q, 500*time.Millisecond); fmt.Sprint(got) != "[t0 t1]" {
		t.Fatalf("after a return took %v, want [t0 t1]", got)
	}
}

// TestPrefetchBoundsWhatAConsumerHolds: a consumer with prefetch 2 holds
// two of three tasks; another consumer gets only the third until the first
// closes, which requeues its two.
func TestPrefetchBoundsWhatAConsumerHolds(t *testing.T) {
	queue := newQueue(t, "t0", "t1", "t2")
	_, inspect := testenv.RabbitChannel(t, shared.RabbitMQURL)
	_, a := consumer(t, queue, Options{Prefetch: 2})
	waitReady(t, inspect, queue, 1)

	_, b := consumer(t, queue, Options{})
	if got := queuetest.AckUntilIdle(t, b, 500*time.Millisecond); fmt.Sprint(got) != "[t2]" {
		t.Fatalf("second consumer took %v while the first holds 2, want [t2]", got)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := queuetest.AckUntilIdle(t, b, 500*time.Millisecond); fmt.Sprint(got) != "[t0 t1]" {
		t.Fatalf("after the first closed took %v, want its [t0 t1]", got)
	}
}

// waitReady waits until queue has want messages ready (not delivered).
func waitReady(t *testing.T, ch *amqp.Channel, queue string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if q.Messages == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages ready in %s, want %d", q.Messages, queue, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTakeAfterTheConnectionClosed: Take reports ErrClosed instead of
// returning nothing forever, so the worker can stop or reconnect.
func TestTakeAfterTheConnectionClosed(t *testing.T) {
	queue := newQueue(t)
	conn, q := consumer(t, queue, Options{})
	queuetest.ClosedTakeFails(t, q, func() { _ = conn.Close() }, ErrClosed)
}

// TestTakeReturnsNilWhenCancelled: an empty queue and a cancelled context
// give (nil, nil), as worker.Queue asks.
func TestTakeReturnsNilWhenCancelled(t *testing.T) {
	_, q := consumer(t, newQueue(t), Options{})
	queuetest.EmptyTakeGivesNil(t, q, 200*time.Millisecond)
}
