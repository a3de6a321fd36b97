// Package natsq is an at-least-once NATS JetStream consumer for Swell
// workers, built on nats.go's jetstream package.
//
// Every pod of a QWorker pulls from one durable pull consumer with explicit
// acknowledgement, one message per pull, so a worker holds at most the task
// it works on. JetStream redelivers a message that is not acknowledged
// within the consumer's AckWait (a worker killed mid-task included), and at
// once when the worker naks it (Return). Tasks that may run longer than
// AckWait should set Options.InProgressEvery, which tells the server the
// task is still being worked on. A pull cut short by cancellation can leave
// one message delivered to no worker; JetStream redelivers it after AckWait.
package natsq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/swell-autoscaler/swell/sdk/go/worker"
)

// DefaultPollWait bounds one pull request; Take pulls again until a message
// arrives or its context ends.
const DefaultPollWait = 5 * time.Second

// minPull is the shortest pull request worth sending.
const minPull = 20 * time.Millisecond

// Options tune the consumer.
type Options struct {
	// AckWait is the consumer's ack wait when New creates the consumer: a
	// message unacknowledged for this long is redelivered. 0 keeps the
	// server's default (30s). An existing consumer keeps its own.
	AckWait time.Duration
	// InProgressEvery, when positive, makes a taken message send "in
	// progress" at this period until it is acked or returned, so a long
	// task is not redelivered after AckWait. Keep it well below AckWait.
	InProgressEvery time.Duration
	// PollWait bounds one pull request; 0 means DefaultPollWait.
	PollWait time.Duration
}

// Queue pulls from one durable JetStream consumer.
type Queue struct {
	cons jetstream.Consumer
	opts Options
}

// New binds to the durable pull consumer of stream, creating it (explicit
// ack, opts.AckWait) when it does not exist yet. Pods of one QWorker share
// it, so each message goes to one of them.
func New(ctx context.Context, js jetstream.JetStream, stream, durable string, opts Options) (*Queue, error) {
	cons, err := js.Consumer(ctx, stream, durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cons, err = create(ctx, js, stream, durable, opts.AckWait)
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream consumer %s/%s: %w", stream, durable, err)
	}
	if opts.PollWait <= 0 {
		opts.PollWait = DefaultPollWait
	}
	return &Queue{cons: cons, opts: opts}, nil
}

// create makes the durable consumer; a pod that lost the race to another
// binds to the one it made.
func create(ctx context.Context, js jetstream.JetStream, stream, durable string, ackWait time.Duration) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{Durable: durable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait}
	cons, err := js.CreateConsumer(ctx, stream, cfg)
	if errors.Is(err, jetstream.ErrConsumerExists) {
		return js.Consumer(ctx, stream, durable)
	}
	return cons, err
}

// Take pulls the next message. It returns an error when the pull fails for
// any reason but "no message yet", a closed connection included.
func (q *Queue) Take(ctx context.Context) (worker.Delivery, error) {
	for ctx.Err() == nil {
		msg, err := q.pull(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil
			}
			if errors.Is(err, nats.ErrConnectionClosed) {
				return nil, fmt.Errorf("jetstream pull: %w: %w", worker.ErrQueueClosed, err)
			}
			return nil, fmt.Errorf("jetstream pull: %w", err)
		}
		if msg != nil {
			return q.deliver(msg), nil
		}
	}
	return nil, nil
}

// pull asks for one message for at most PollWait (or what is left of
// ctx); (nil, nil) means none arrived in time.
func (q *Queue) pull(ctx context.Context) (jetstream.Msg, error) {
	wait := q.opts.PollWait
	if deadline, ok := ctx.Deadline(); ok {
		left := time.Until(deadline)
		if left < minPull {
			<-ctx.Done() // too short for a pull request
			return nil, nil
		}
		wait = min(wait, left)
	}
	pullCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	msg, err := q.cons.Next(jetstream.FetchContext(pullCtx))
	if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return nil, nil
	}
	return msg, err
}

func (q *Queue) deliver(msg jetstream.Msg) *delivery {
	d := &delivery{msg: msg, done: make(chan struct{})}
	d.settle = sync.OnceFunc(func() { close(d.done) })
	if q.opts.InProgressEvery > 0 {
		go d.keepInProgress(q.opts.InProgressEvery)
	}
	return d
}

type delivery struct {
	msg    jetstream.Msg
	done   chan struct{} // closed when settled, to stop keepInProgress
	settle func()
}

// ID is the message's stream sequence.
func (d *delivery) ID() string {
	meta, err := d.msg.Metadata()
	if err != nil {
		return d.msg.Subject()
	}
	return d.msg.Subject() + "#" + strconv.FormatUint(meta.Sequence.Stream, 10)
}

func (d *delivery) Body() []byte { return d.msg.Data() }

// Ack acknowledges the message and waits for the server to confirm, so an
// acked task is never redelivered.
func (d *delivery) Ack(ctx context.Context) error {
	d.settle()
	if err := d.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("jetstream ack %s: %w", d.ID(), err)
	}
	return nil
}

// Return naks the message: JetStream redelivers it at once, to any worker.
func (d *delivery) Return(context.Context) error {
	d.settle()
	if err := d.msg.Nak(); err != nil {
		return fmt.Errorf("jetstream nak %s: %w", d.ID(), err)
	}
	return nil
}

// keepInProgress resets the message's ack timer every period until the
// delivery is settled.
func (d *delivery) keepInProgress(every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-d.done:
			return
		case <-tick.C:
			_ = d.msg.InProgress() // a failed heartbeat only risks a redelivery
		}
	}
}
