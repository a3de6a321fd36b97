package worker

import (
	"context"
	"errors"
	"time"
)

// ErrQueueClosed is wrapped by a Queue's Take error when the queue can
// never deliver again (its connection or channel is gone for good). The
// worker then stops at once, without leaving its QWorker, so that its
// container restarts and reconnects; retrying a dead consumer would only
// hold the pod idle while the backlog waits.
var ErrQueueClosed = errors.New("queue closed")

// Queue is a broker consumer with at-least-once delivery. Each broker's
// package in sdk/go/queue implements it.
type Queue interface {
	// Take blocks until a task is available or ctx ends. It returns
	// (nil, nil) when ctx ended without a task, and an error wrapping
	// ErrQueueClosed when it will never deliver again; other errors are
	// retried after a second.
	Take(ctx context.Context) (Delivery, error)
}

// SettleTimeouter is implemented by a Queue whose acks can wait on the
// broker longer than DefaultSettleTimeout (a classic-protocol Kafka group
// holds commits while it rebalances). When Options.SettleTimeout is 0 the
// worker gives each Ack or Return the queue's own bound, so a task that
// was done is not left on the broker because its ack was cut short.
type SettleTimeouter interface {
	SettleTimeout() time.Duration
}

// DeadLetterCounter is implemented by a Queue that dead-letters tasks
// itself (kafkaq, rabbitq, redisq; natsq counts the messages it
// terminated): DeadLettered is how many it moved to its dead-letter
// destination since it opened. The worker reports the
// count on its pod (swell.dev/worker-stats), where the controller sums it
// into the swell_qworker_worker_tasks_total metric.
type DeadLetterCounter interface {
	DeadLettered() int64
}

// Delivery is one task taken from a queue. Exactly one of Ack or Return
// must be called: until then the broker (or the SDK's recovery) keeps the
// task, so a worker killed mid-task loses nothing.
type Delivery interface {
	// ID identifies the task, for logs.
	ID() string
	// Body is the task's payload.
	Body() []byte
	// Ack marks the task done.
	Ack(ctx context.Context) error
	// Return hands the task back to the queue for another worker.
	Return(ctx context.Context) error
}

// Failer is implemented by a Delivery that keeps why its task failed: when
// the handler returns an error, Run calls Fail with it instead of Return,
// and the queue puts the error on the task when it dead-letters it
// (kafkaq, rabbitq).
type Failer interface {
	Fail(ctx context.Context, cause error) error
}
