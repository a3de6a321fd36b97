package rabbitq

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/sdk/go/worker"
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

// TestReturnedTaskComesBack: a returned task comes back after the default
// backoff (1 s) and is taken again.
func TestReturnedTaskComesBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	queue := newQueue(t, "t0", "t1")
	_, q := consumer(t, queue, Options{})
	if err := queuetest.Take(ctx, t, q).Return(ctx); err != nil {
		t.Fatal(err)
	}
	if got := queuetest.AckUntilIdle(t, q, 5*time.Second); fmt.Sprint(got) != "[t0 t1]" {
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
	waitReadyFor(t, ch, queue, want, 10*time.Second)
}

// waitReadyFor is waitReady with its own bound.
func waitReadyFor(t *testing.T, ch *amqp.Channel, queue string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
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

// TestFailingTaskWaitsItsBackoffThenIsDeadLettered: a task that always
// fails waits in its retry queue after each failure while the next task is
// done, comes back, and after MaxAttempts failures lands in <queue>.dead
// with its count and last error; nothing stays in the queue or the retry
// queue.
func TestFailingTaskWaitsItsBackoffThenIsDeadLettered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	queue := newQueue(t, "poison", "t1")
	_, inspect := testenv.RabbitChannel(t, shared.RabbitMQURL)
	_, q := consumer(t, queue, Options{MaxAttempts: 3, Backoff: 3 * time.Second, MaxBackoff: 3 * time.Second})
	retry := RetryQueue(queue, 3*time.Second)

	for attempt := 1; attempt <= 3; attempt++ {
		d := queuetest.Take(ctx, t, q)
		if got := string(d.Body()); got != "poison" {
			t.Fatalf("attempt %d took %q, want poison", attempt, got)
		}
		if err := d.(worker.Failer).Fail(ctx, fmt.Errorf("boom %d", attempt)); err != nil {
			t.Fatal(err)
		}
		if attempt == 3 {
			break
		}
		// Waiting out its backoff in the retry queue, not in the queue:
		// the next task is taken meanwhile.
		waitReadyFor(t, inspect, retry, 1, time.Second)
		if attempt == 1 {
			d := queuetest.Take(ctx, t, q)
			if got := string(d.Body()); got != "t1" {
				t.Fatalf("while poison waits took %q, want t1", got)
			}
			if err := d.Ack(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitReady(t, inspect, DeadLetterQueue(queue), 1)
	m, ok, err := inspect.Get(DeadLetterQueue(queue), true)
	if err != nil || !ok {
		t.Fatalf("get from %s: %v, %v", DeadLetterQueue(queue), ok, err)
	}
	if string(m.Body) != "poison" || headerInt(m.Headers[AttemptsHeader]) != 3 || m.Headers[ErrorHeader] != "boom 3" {
		t.Fatalf("dead letter %q with headers %v; want poison, %s=3, %s=boom 3", m.Body, m.Headers, AttemptsHeader, ErrorHeader)
	}
	waitReady(t, inspect, queue, 0)
	waitReady(t, inspect, retry, 0)
	if got, want := q.Counters(), (Counters{Acked: 1, Retried: 2, DeadLettered: 1}); got != want {
		t.Fatalf("counters %+v, want %+v", got, want)
	}
}

// TestQuorumQueueCountsDeliveriesOfDeadConsumers: on a quorum queue the
// broker's x-delivery-count of a task whose consumer died adds to its
// attempts, so with MaxAttempts 2 one crash and one failure dead-letter it.
func TestQuorumQueueCountsDeliveriesOfDeadConsumers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	queue := "rabbitq-" + t.Name()
	_, ch := testenv.RabbitChannel(t, shared.RabbitMQURL)
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{Body: []byte("crasher")}); err != nil {
		t.Fatal(err)
	}
	connA, a := consumer(t, queue, Options{MaxAttempts: 2})
	queuetest.Take(ctx, t, a)
	_ = connA.Close() // dies holding it

	_, b := consumer(t, queue, Options{MaxAttempts: 2})
	if err := queuetest.Take(ctx, t, b).Return(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ch, DeadLetterQueue(queue), 1)
	m, ok, err := ch.Get(DeadLetterQueue(queue), true)
	if err != nil || !ok || headerInt(m.Headers[AttemptsHeader]) != 2 {
		t.Fatalf("dead letter %v (%v, %v); want crasher with %s=2", m.Headers, ok, err, AttemptsHeader)
	}
	if got := b.Counters(); got.DeadLettered != 1 || got.Retried != 0 {
		t.Fatalf("counters %+v, want 1 dead-lettered, 0 retried", got)
	}
}

// TestNoBackoffRequeuesAtTheBack: with a negative backoff a failed task
// goes straight to the back of the queue, counted, and with a negative
// MaxAttempts it is never dead-lettered.
func TestNoBackoffRequeuesAtTheBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	queue := newQueue(t, "bad", "t1")
	_, q := consumer(t, queue, Options{MaxAttempts: -1, Backoff: -1})
	var took []string
	for range 6 {
		d := queuetest.Take(ctx, t, q)
		took = append(took, string(d.Body()))
		if string(d.Body()) == "t1" {
			if err := d.Ack(ctx); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := d.Return(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(took) != "[bad t1 bad bad bad bad]" {
		t.Fatalf("took %v, want bad, then t1 (bad went to the back), then bad again and again", took)
	}
	if got := q.Counters(); got.Retried != 5 || got.DeadLettered != 0 {
		t.Fatalf("counters %+v, want 5 retried, 0 dead-lettered", got)
	}
}

func TestAttemptsReadEveryIntegerWidth(t *testing.T) {
	for name, tc := range map[string]struct {
		h    amqp.Table
		want int
	}{
		"first delivery":           {h: nil, want: 0},
		"counted by the consumer":  {h: amqp.Table{AttemptsHeader: int64(2)}, want: 2},
		"a 32-bit count (pika)":    {h: amqp.Table{AttemptsHeader: int32(3)}, want: 3},
		"plus quorum redeliveries": {h: amqp.Table{AttemptsHeader: int8(1), deliveryCountHeader: int64(2)}, want: 3},
		"not a number":             {h: amqp.Table{AttemptsHeader: "x"}, want: 0},
	} {
		t.Run(name, func(t *testing.T) {
			if got := attempts(tc.h); got != tc.want {
				t.Fatalf("attempts(%v) = %d, want %d", tc.h, got, tc.want)
			}
		})
	}
}

var _ worker.Failer = (*delivery)(nil)
