// Package source defines what every Swell measurement source returns and
// the small interface each one implements. A source measures one thing (a
// queue's backlog, a consumer group's lag) and never decides anything: the
// policy package turns samples into replica counts.
//
// Each broker lives in its own package under pkg/source/<broker>, with one
// shared connection per broker configuration (a ScalerConfig) from which any
// number of per-queue Sources are made.
package source

import (
	"context"
	"time"
)

// Sample is one measurement of a queue.
type Sample struct {
	// Backlog is the work not yet finished: messages waiting plus messages
	// handed to a consumer and not yet acknowledged. Scaling decisions use it.
	Backlog int64
	// Ready is the part of Backlog waiting for a consumer.
	Ready int64
	// InFlight is the part of Backlog delivered but not acknowledged.
	InFlight int64
	// Time is when the broker was asked.
	Time time.Time
	// OldestAge is how long the oldest task waiting for a consumer has
	// waited, from the broker's own timestamp of it (a stream entry's ID,
	// a JetStream message's time, a Kafka record's timestamp, a RabbitMQ
	// message's timestamp property). 0 means unknown or nothing waiting:
	// callers must treat it as "no correction", never as "no backlog".
	// The wait-time model uses it to drain a backlog that is already late
	// faster.
	OldestAge time.Duration
}

// AgeAt is how old a task stamped at ts is at now, or 0 when ts is unset or
// lies after now (clocks of broker and controller differ, or the producer
// stamped its own time): an unknown age, never a negative one.
func AgeAt(now, ts time.Time) time.Duration {
	if ts.IsZero() || !ts.Before(now) {
		return 0
	}
	return now.Sub(ts)
}

// Source measures one queue.
type Source interface {
	// Measure asks the broker now. An error means "unknown", never zero:
	// callers must not scale down on it.
	Measure(ctx context.Context) (Sample, error)
	// Close releases what the source holds (not the shared connection).
	Close() error
}

// Pusher is implemented by sources that can notice changes as they happen
// (Redis keyspace notifications, NATS JetStream), so the loop reacts
// in well under a poll interval.
type Pusher interface {
	// Watch sends on wake (without blocking when it is full) whenever the
	// backlog may have changed, until ctx ends or the subscription fails.
	Watch(ctx context.Context, wake chan<- struct{}) error
}
