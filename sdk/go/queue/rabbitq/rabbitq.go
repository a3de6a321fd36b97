// Package rabbitq is an at-least-once RabbitMQ queue consumer for Swell
// workers, built on amqp091-go.
//
// Messages are consumed with manual acknowledgement: RabbitMQ keeps every
// delivered message unacknowledged until the worker acks it, and requeues it
// when the worker nacks it or its channel or connection closes (a worker
// killed mid-task included). Prefetch (basic.qos) bounds how many
// unacknowledged messages the broker pushes to one consumer; the default of
// one keeps tasks with idle workers rather than buffered in a busy one.
package rabbitq

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/swell-autoscaler/swell/sdk/go/worker"
)

// ErrClosed is returned by Take once the channel or its connection closed:
// no more messages can arrive on it, so the worker should stop or reconnect
// rather than retry Take.
// It wraps worker.ErrQueueClosed, so worker.Run stops on it.
var ErrClosed = fmt.Errorf("rabbitmq channel closed: %w", worker.ErrQueueClosed)

// Options tune the consumer.
type Options struct {
	// Prefetch is the channel's basic.qos prefetch count, the most
	// unacknowledged messages this consumer holds; 0 means 1.
	Prefetch int
	// ConsumerTag names the consumer on the broker; empty lets the library
	// generate one.
	ConsumerTag string
}

// Queue consumes one RabbitMQ queue on one channel.
type Queue struct {
	ch         *amqp.Channel
	queue      string
	deliveries <-chan amqp.Delivery
	closed     chan *amqp.Error
}

// New sets the channel's prefetch and starts consuming queue with manual
// acknowledgement. The queue must exist (producers declare it). The
// channel belongs to the Queue from then on: close it with Close.
func New(ch *amqp.Channel, queue string, o Options) (*Queue, error) {
	prefetch := o.Prefetch
	if prefetch <= 0 {
		prefetch = 1
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("rabbitmq basic.qos %d: %w", prefetch, err)
	}
	deliveries, err := ch.Consume(queue, o.ConsumerTag, false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq basic.consume %s: %w", queue, err)
	}
	return &Queue{ch: ch, queue: queue, deliveries: deliveries, closed: closed}, nil
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
		return &delivery{d: d}, nil
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

type delivery struct {
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
	return nil
}

// Return nacks the message with requeue: RabbitMQ puts it back in its
// original place in the queue, for any consumer.
func (d *delivery) Return(context.Context) error {
	if err := d.d.Nack(false, true); err != nil {
		return fmt.Errorf("rabbitmq nack %s: %w", d.ID(), err)
	}
	return nil
}
