// Package natsq is an at-least-once NATS JetStream consumer for Swell
// workers, built on nats.go's jetstream package.
//
// Every pod of a QWorker pulls from one durable pull consumer with explicit
// acknowledgement, one message per pull, so a worker holds at most the task
// it works on. JetStream redelivers a message that is not acknowledged
// within the consumer's AckWait (a worker killed mid-task included), and at
// once a backoff after the worker naks it (Return). While a task runs, the
// worker tells the server every third of AckWait that it is still working
// on it (by default; Options.InProgressEvery), so a task longer than
// AckWait runs once. After MaxDeliver deliveries (Options.MaxDeliver,
// default 5, set on the consumer New creates) a failing task is terminated
// (Term): JetStream stops delivering it and publishes a
// $JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED advisory naming its stream
// sequence (or MAX_DELIVERIES when the server ran out of deliveries with the
// worker dead), where a dead-letter consumer can fetch it. A pull cut short
// by cancellation can leave one message delivered to no worker; JetStream
// redelivers it after AckWait.
package natsq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
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

// Defaults of Options.
const (
	DefaultMaxDeliver = 5
	DefaultBackoff    = time.Second
	DefaultMaxBackoff = time.Minute
	// serverAckWait is JetStream's AckWait when a consumer sets none.
	serverAckWait = 30 * time.Second
)

// Options tune the consumer.
type Options struct {
	// AckWait is the consumer's ack wait when New creates the consumer: a
	// message unacknowledged for this long is redelivered. 0 keeps the
	// server's default (30s). An existing consumer keeps its own.
	AckWait time.Duration
	// InProgressEvery is how often a taken message sends "in progress"
	// until it is acked or returned, so a long task is not redelivered
	// after AckWait. 0 means a third of the consumer's AckWait; negative
	// turns it off.
	InProgressEvery time.Duration
	// MaxDeliver is how many times a message may be delivered before it is
	// terminated, set on the consumer New creates; 0 means
	// DefaultMaxDeliver, negative means unlimited. An existing consumer
	// keeps its own, which Return follows.
	MaxDeliver int
	// Backoff is the nak delay after the first failure, doubled per
	// delivery up to MaxBackoff; 0 means DefaultBackoff, negative means
	// redeliver at once.
	Backoff time.Duration
	// MaxBackoff caps Backoff; 0 means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// PollWait bounds one pull request; 0 means DefaultPollWait.
	PollWait time.Duration
	// Logger receives retry and dead-letter logs; nil is slog.Default.
	Logger *slog.Logger
}

// Counters are what a Queue did since it opened, for metrics.
type Counters struct {
	Retried, Terminated int64
}

// Queue pulls from one durable JetStream consumer.
type Queue struct {
	cons       jetstream.Consumer
	opts       Options
	maxDeliver int // the consumer's; <= 0 unlimited
	log        *slog.Logger

	retried, terminated atomic.Int64
}

// New binds to the durable pull consumer of stream, creating it (explicit
// ack, opts.AckWait) when it does not exist yet. Pods of one QWorker share
// it, so each message goes to one of them.
func New(ctx context.Context, js jetstream.JetStream, stream, durable string, opts Options) (*Queue, error) {
	if opts.MaxDeliver == 0 {
		opts.MaxDeliver = DefaultMaxDeliver
	}
	cons, err := js.Consumer(ctx, stream, durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cons, err = create(ctx, js, stream, durable, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream consumer %s/%s: %w", stream, durable, err)
	}
	cfg := cons.CachedInfo().Config
	opts = withDefaults(opts, cfg.AckWait)
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Queue{cons: cons, opts: opts, maxDeliver: cfg.MaxDeliver, log: log.With("stream", stream, "consumer", durable)}, nil
}

// withDefaults fills the zero options; ackWait is the consumer's.
func withDefaults(o Options, ackWait time.Duration) Options {
	if o.PollWait <= 0 {
		o.PollWait = DefaultPollWait
	}
	if ackWait <= 0 {
		ackWait = serverAckWait
	}
	if o.InProgressEvery == 0 {
		o.InProgressEvery = ackWait / 3
	}
	if o.Backoff == 0 {
		o.Backoff = DefaultBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	return o
}

// backoff is the nak delay after delivery number n (1 = first) failed.
func backoff(o Options, n uint64) time.Duration {
	if o.Backoff <= 0 {
		return 0
	}
	d := o.Backoff
	for i := uint64(1); i < n && d < o.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, o.MaxBackoff)
}

// Counters reports what the queue did so far.
func (q *Queue) Counters() Counters {
	return Counters{Retried: q.retried.Load(), Terminated: q.terminated.Load()}
}

// DeadLettered counts the messages this queue terminated after MaxDeliver
// failed deliveries (worker.DeadLetterCounter): JetStream's dead letters,
// each announced by a MSG_TERMINATED advisory.
func (q *Queue) DeadLettered() int64 { return q.terminated.Load() }

// create makes the durable consumer; a pod that lost the race to another
// binds to the one it made.
func create(ctx context.Context, js jetstream.JetStream, stream, durable string, o Options) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{Durable: durable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: o.AckWait, MaxDeliver: max(o.MaxDeliver, -1)}
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
	d := &delivery{q: q, msg: msg, done: make(chan struct{})}
	d.settle = sync.OnceFunc(func() { close(d.done) })
	if q.opts.InProgressEvery > 0 {
		go d.keepInProgress(q.opts.InProgressEvery)
	}
	return d
}

type delivery struct {
	q      *Queue
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

// Return naks the message so JetStream redelivers it, to any worker, after
// the backoff; on its last allowed delivery it terminates it instead.
func (d *delivery) Return(context.Context) error {
	d.settle()
	var n uint64
	if meta, err := d.msg.Metadata(); err == nil {
		n = meta.NumDelivered
	}
	if d.q.maxDeliver > 0 && n >= uint64(d.q.maxDeliver) {
		if err := d.msg.TermWithReason("failed on every one of MaxDeliver deliveries"); err != nil {
			return fmt.Errorf("jetstream term %s: %w", d.ID(), err)
		}
		d.q.terminated.Add(1)
		d.q.log.Error("task dead-lettered (terminated)", "task", d.ID(), "deliveries", n, "maxDeliver", d.q.maxDeliver)
		return nil
	}
	if err := d.msg.NakWithDelay(backoff(d.q.opts, n)); err != nil {
		return fmt.Errorf("jetstream nak %s: %w", d.ID(), err)
	}
	d.q.retried.Add(1)
	d.q.log.Warn("task failed; retrying", "task", d.ID(), "deliveries", n, "maxDeliver", d.q.maxDeliver)
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
