// Package rabbitq is an at-least-once RabbitMQ queue consumer for Swell
// workers, built on amqp091-go.
//
// Messages are consumed with manual acknowledgement: RabbitMQ keeps every
// delivered message unacknowledged until the worker acks it, and requeues it
// when its channel or connection closes (a worker killed mid-task
// included). Prefetch (basic.qos) bounds how many unacknowledged messages
// the broker pushes to one consumer; the default of one keeps tasks with
// idle workers rather than buffered in a busy one.
//
// A task whose handler fails is not nacked back to the head of the queue,
// where it would be taken again at once by whoever is free: the consumer
// republishes a copy carrying its attempt count in the header
// "swell-attempts", waits for the broker's publisher confirm, and only then
// acks the original, so a failure neither loses the task nor forgets its
// count (a worker that dies between the confirm and the ack leaves both, and
// the task runs once more). The copy waits out a doubling backoff in a
// retry queue "<queue>.retry.<ms>ms" (one per delay, declared by the
// consumer with that message TTL and the default exchange as dead-letter
// exchange routed to <queue>), from which RabbitMQ moves it back onto
// <queue>. After Options.MaxAttempts failures the copy goes instead to the
// dead-letter exchange "<queue>.dlx" (direct, declared with the queue
// "<queue>.dead" bound to it by the queue name). This works the same on
// classic and quorum queues and needs no queue argument from producers,
// which RabbitMQ cannot change on an existing queue. A producer that
// declares a quorum queue with x-dead-letter-exchange "<queue>.dlx" and an
// x-delivery-limit gets the broker's own limit for what the consumer never
// sees fail (a handler that crashes its worker every time): the quorum
// queue's x-delivery-count of such deliveries is added to the attempts. A
// classic queue has no delivery count, so there only failures the worker
// reports are counted.
package rabbitq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/swell-autoscaler/swell/sdk/go/queue/retry"
	"github.com/swell-autoscaler/swell/sdk/go/worker"
)

// ErrClosed is returned by Take once the channel or its connection closed:
// no more messages can arrive on it, so the worker should stop or reconnect
// rather than retry Take.
// It wraps worker.ErrQueueClosed, so worker.Run stops on it.
var ErrClosed = fmt.Errorf("rabbitmq channel closed: %w", worker.ErrQueueClosed)

// Defaults of Options, the same on every broker (package retry).
const (
	DefaultMaxAttempts = retry.DefaultMaxAttempts
	DefaultBackoff     = retry.DefaultBackoff
	DefaultMaxBackoff  = retry.DefaultMaxBackoff
)

// Headers the consumer sets on the copies it republishes.
const (
	// AttemptsHeader counts the failed attempts of a task.
	AttemptsHeader = "swell-attempts"
	// ErrorHeader is the last failure's error, on a dead-lettered task.
	ErrorHeader = "swell-last-error"
	// deliveryCountHeader is a quorum queue's count of earlier deliveries
	// that were returned (a consumer that died included).
	deliveryCountHeader = "x-delivery-count"
)

// maxErrorLen bounds ErrorHeader.
const maxErrorLen = 1024

// Options tune the consumer.
type Options struct {
	// Prefetch is the channel's basic.qos prefetch count, the most
	// unacknowledged messages this consumer holds; 0 means 1.
	Prefetch int
	// ConsumerTag names the consumer on the broker; empty lets the library
	// generate one.
	ConsumerTag string
	// MaxAttempts is how many times a task may fail before it goes to the
	// dead-letter exchange; 0 means DefaultMaxAttempts, negative means
	// never dead-letter.
	MaxAttempts int
	// Backoff is the wait before a failed task is taken again, doubled per
	// failure up to MaxBackoff; 0 means DefaultBackoff, negative means none
	// (the copy goes straight to the back of the queue).
	Backoff time.Duration
	// MaxBackoff caps Backoff; 0 means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// DeadLetterExchange is where dead-lettered tasks are published, with
	// the queue's name as routing key. Empty means DeadLetterExchange(queue),
	// which New declares with the queue DeadLetterQueue(queue) bound to it;
	// a name set here must exist (New declares nothing for it).
	DeadLetterExchange string
	// Logger receives retry and dead-letter logs; nil is slog.Default.
	Logger *slog.Logger
}

func (o Options) withDefaults(queue string) Options {
	if o.Prefetch <= 0 {
		o.Prefetch = 1
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.DeadLetterExchange == "" {
		o.DeadLetterExchange = DeadLetterExchange(queue)
	}
	return o
}

// DeadLetterExchange is the default dead-letter exchange of queue.
func DeadLetterExchange(queue string) string { return queue + ".dlx" }

// DeadLetterQueue is the queue bound to the default dead-letter exchange of
// queue, where dead-lettered tasks wait for someone to look at them.
func DeadLetterQueue(queue string) string { return queue + ".dead" }

// RetryQueue is where a task of queue waits out a backoff of delay
// (rounded to the millisecond) before RabbitMQ moves it back onto queue.
func RetryQueue(queue string, delay time.Duration) string {
	return queue + ".retry." + strconv.FormatInt(delay.Milliseconds(), 10) + "ms"
}

// Counters are what a Queue did since it opened, for metrics.
type Counters struct {
	Acked, Retried, DeadLettered int64
}

// Queue consumes one RabbitMQ queue on one channel.
type Queue struct {
	ch         *amqp.Channel
	queue      string
	opts       Options
	retry      retry.Policy
	log        *slog.Logger
	deliveries <-chan amqp.Delivery
	closed     chan *amqp.Error

	mu       sync.Mutex
	declared map[string]bool // retry queues declared on this channel

	acked, retried, dead atomic.Int64
}

// New puts the channel in confirm mode, declares the default dead-letter
// exchange and queue (unless Options.DeadLetterExchange names another),
// sets the prefetch and starts consuming queue with manual
// acknowledgement. The queue must exist (producers declare it). The
// channel belongs to the Queue from then on: close it with Close.
func New(ch *amqp.Channel, queue string, o Options) (*Queue, error) {
	useDefaultDLX := o.DeadLetterExchange == ""
	o = o.withDefaults(queue)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("rabbitmq confirm.select: %w", err)
	}
	if useDefaultDLX {
		if err := declareDeadLetter(ch, queue); err != nil {
			return nil, err
		}
	}
	if err := ch.Qos(o.Prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("rabbitmq basic.qos %d: %w", o.Prefetch, err)
	}
	deliveries, err := ch.Consume(queue, o.ConsumerTag, false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq basic.consume %s: %w", queue, err)
	}
	policy := retry.Policy{MaxAttempts: o.MaxAttempts, Backoff: o.Backoff, MaxBackoff: o.MaxBackoff}.WithDefaults()
	return &Queue{ch: ch, queue: queue, opts: o, retry: policy, log: o.Logger.With("queue", queue), deliveries: deliveries,
		closed: closed, declared: map[string]bool{}}, nil
}

// declareDeadLetter declares the durable direct exchange <queue>.dlx and
// the durable queue <queue>.dead bound to it by queue's name (the routing
// key RabbitMQ itself uses when it dead-letters a message published to
// queue through the default exchange).
func declareDeadLetter(ch *amqp.Channel, queue string) error {
	dlx, dead := DeadLetterExchange(queue), DeadLetterQueue(queue)
	if err := ch.ExchangeDeclare(dlx, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbitmq declare exchange %s: %w", dlx, err)
	}
	if _, err := ch.QueueDeclare(dead, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbitmq declare queue %s: %w", dead, err)
	}
	if err := ch.QueueBind(dead, queue, dlx, false, nil); err != nil {
		return fmt.Errorf("rabbitmq bind %s to %s: %w", dead, dlx, err)
	}
	return nil
}

// DeadLettered is how many tasks the queue dead-lettered so far; the
// worker reports it on its pod (worker.DeadLetterCounter).
func (q *Queue) DeadLettered() int64 { return q.dead.Load() }

var _ worker.DeadLetterCounter = (*Queue)(nil)

// Counters reports what the queue did so far.
func (q *Queue) Counters() Counters {
	return Counters{Acked: q.acked.Load(), Retried: q.retried.Load(), DeadLettered: q.dead.Load()}
}

// Take waits for the next message. It returns ErrClosed (wrapped with the
// broker's reason) when the channel or connection closed.
func (q *Queue) Take(ctx context.Context) (worker.Delivery, error) {
	select {
	case <-ctx.Done():
		return nil, nil
	case d, ok := <-q.deliveries:
		if !ok {
			return nil, q.closeErr()
		}
		return &delivery{q: q, d: d}, nil
	}
}

// closeErr explains why the deliveries ended.
func (q *Queue) closeErr() error {
	select {
	case reason, ok := <-q.closed:
		if ok && reason != nil {
			return fmt.Errorf("%w: %s", ErrClosed, reason.Error())
		}
	default:
	}
	return fmt.Errorf("%w: consuming %s", ErrClosed, q.queue)
}

// Close closes the channel: RabbitMQ requeues every message this consumer
// holds and has not acknowledged.
func (q *Queue) Close() error {
	if err := q.ch.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("rabbitmq close channel: %w", err)
	}
	return nil
}

// declareRetry declares the retry queue for delay once per channel: its
// messages expire after delay into the default exchange, routed to q.queue.
func (q *Queue) declareRetry(delay time.Duration) (string, error) {
	name := RetryQueue(q.queue, delay)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.declared[name] {
		return name, nil
	}
	args := amqp.Table{
		"x-message-ttl":             delay.Milliseconds(),
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": q.queue,
	}
	if _, err := q.ch.QueueDeclare(name, true, false, false, false, args); err != nil {
		return "", fmt.Errorf("rabbitmq declare retry queue %s: %w", name, err)
	}
	q.declared[name] = true
	return name, nil
}

// publish sends msg and waits for the broker's confirm.
func (q *Queue) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	dc, err := q.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
	if err != nil {
		return fmt.Errorf("rabbitmq publish to %q/%s: %w", exchange, key, err)
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("rabbitmq confirm of a publish to %q/%s: %w", exchange, key, err)
	}
	if !ok {
		return fmt.Errorf("rabbitmq publish to %q/%s: nacked by the broker", exchange, key)
	}
	return nil
}

type delivery struct {
	q *Queue
	d amqp.Delivery
}

// ID is the message id when the producer set one, else the delivery tag.
func (d *delivery) ID() string {
	if d.d.MessageId != "" {
		return d.d.MessageId
	}
	return "delivery-" + strconv.FormatUint(d.d.DeliveryTag, 10)
}

func (d *delivery) Body() []byte { return d.d.Body }

// Ack acknowledges the message: RabbitMQ forgets it.
func (d *delivery) Ack(context.Context) error {
	if err := d.d.Ack(false); err != nil {
		return fmt.Errorf("rabbitmq ack %s: %w", d.ID(), err)
	}
	d.q.acked.Add(1)
	return nil
}

// Return counts a failed attempt: see Fail.
func (d *delivery) Return(ctx context.Context) error { return d.Fail(ctx, nil) }

// Fail counts a failed attempt and hands the task on: a copy with the new
// count goes to its retry queue (after the backoff RabbitMQ moves it back
// onto the queue) or, after MaxAttempts failures, to the dead-letter
// exchange with cause; the original is acked once the broker confirmed
// the copy. When the copy cannot be published the original is nacked back
// to the queue instead (that attempt is not counted).
func (d *delivery) Fail(ctx context.Context, cause error) error {
	q := d.q
	n := attempts(d.d.Headers) + 1
	msg := copyOf(d.d, n)
	exchange, key := "", q.queue
	dead := q.retry.Dead(n)
	var wait time.Duration
	switch {
	case dead:
		exchange = q.opts.DeadLetterExchange
		if cause != nil {
			msg.Headers[ErrorHeader] = truncate(cause.Error(), maxErrorLen)
		}
	case q.retry.Wait(n) > 0:
		wait = q.retry.Wait(n)
		name, err := q.declareRetry(wait)
		if err != nil {
			return d.requeue(err)
		}
		key = name
	}
	if err := q.publish(ctx, exchange, key, msg); err != nil {
		return d.requeue(err)
	}
	if err := d.d.Ack(false); err != nil {
		return fmt.Errorf("rabbitmq ack %s after handing on its copy (it will run once more): %w", d.ID(), err)
	}
	if dead {
		q.dead.Add(1)
		q.log.Error("task dead-lettered", "task", d.ID(), "attempts", n, "exchange", exchange, "err", cause)
		return nil
	}
	q.retried.Add(1)
	q.log.Warn("task failed; retrying", "task", d.ID(), "attempts", n, "maxAttempts", q.retry.MaxAttempts, "backoff", wait, "err", cause)
	return nil
}

// requeue nacks the original back onto the queue when its copy could not
// be handed on, so the task is neither lost nor held.
func (d *delivery) requeue(cause error) error {
	if err := d.d.Nack(false, true); err != nil {
		return fmt.Errorf("%w; rabbitmq nack %s: %w", cause, d.ID(), err)
	}
	return fmt.Errorf("task %s requeued without counting the attempt: %w", d.ID(), cause)
}

// attempts is how many times a task failed before this delivery: the
// count the consumer put on it, plus a quorum queue's count of deliveries
// returned since (workers that died holding it).
func attempts(h amqp.Table) int {
	return headerInt(h[AttemptsHeader]) + headerInt(h[deliveryCountHeader])
}

// headerInt reads an AMQP integer of any width (clients encode small
// numbers in different types).
func headerInt(v any) int {
	switch n := v.(type) {
	case int8:
		return int(n)
	case int16:
		return int(n)
	case int32:
		return int(n)
	case int64:
		return int(n)
	case int:
		return n
	case uint8:
		return int(n)
	case uint16:
		return int(n)
	case uint32:
		return int(n)
	}
	return 0
}

// copyOf is the message to republish for d after its n-th failure: the
// same body and properties with the new count, minus what must not travel
// (the quorum queue's delivery count, now folded in; a per-message TTL; a
// user id the broker would check against this connection).
func copyOf(d amqp.Delivery, n int) amqp.Publishing {
	h := amqp.Table{}
	for k, v := range d.Headers {
		h[k] = v
	}
	delete(h, deliveryCountHeader)
	h[AttemptsHeader] = int64(n)
	return amqp.Publishing{
		Headers: h, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding, DeliveryMode: d.DeliveryMode,
		Priority: d.Priority, CorrelationId: d.CorrelationId, ReplyTo: d.ReplyTo, MessageId: d.MessageId,
		Timestamp: d.Timestamp, Type: d.Type, AppId: d.AppId, Body: d.Body,
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
