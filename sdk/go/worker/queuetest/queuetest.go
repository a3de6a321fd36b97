// Package queuetest checks a worker.Queue against the contract worker.Run
// relies on, and gives the small helpers every consumer's tests need: take
// one task, ack everything that arrives, an empty Take that ends with its
// context, a closed queue that says so. Swell's consumers (sdk/go/queue/...)
// use it, and so can anyone writing a consumer for another broker, the way
// net/http/httptest serves handler authors.
package queuetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/swell-autoscaler/swell/sdk/go/worker"
)

// Take takes one task, failing the test unless one arrives before ctx ends.
func Take(ctx context.Context, t testing.TB, q worker.Queue) worker.Delivery {
	t.Helper()
	d, err := q.Take(ctx)
	if err != nil || d == nil {
		t.Fatalf("Take = %v, %v; want a task", d, err)
	}
	return d
}

// AckFor takes and acks every task that arrives within d and returns their
// bodies, sorted.
func AckFor(t testing.TB, q worker.Queue, d time.Duration) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return ack(t, q, func() (context.Context, context.CancelFunc) { return ctx, func() {} })
}

// AckUntilIdle takes and acks tasks until none arrives for idle, and
// returns their bodies, sorted.
func AckUntilIdle(t testing.TB, q worker.Queue, idle time.Duration) []string {
	t.Helper()
	return ack(t, q, func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), idle)
	})
}

// ack takes with a context from next until a Take comes back empty.
func ack(t testing.TB, q worker.Queue, next func() (context.Context, context.CancelFunc)) []string {
	t.Helper()
	var got []string
	for {
		ctx, cancel := next()
		d, err := q.Take(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if d == nil {
			slices.Sort(got)
			return got
		}
		got = append(got, string(d.Body()))
		if err := d.Ack(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// EmptyTakeGivesNil checks that Take on an empty queue returns (nil, nil)
// once its context ends after wait, as worker.Queue asks.
func EmptyTakeGivesNil(t testing.TB, q worker.Queue, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if d, err := q.Take(ctx); d != nil || err != nil {
		t.Fatalf("Take on an empty queue after its context ended = %v, %v; want nil, nil", d, err)
	}
}

// ClosedTakeFails calls closeQueue (close the consumer's connection or
// client), then checks that Take reports worker.ErrQueueClosed within 5 s
// instead of waiting forever, so worker.Run can stop; the error must also
// wrap each of also (a consumer's own sentinel).
func ClosedTakeFails(t testing.TB, q worker.Queue, closeQueue func(), also ...error) {
	t.Helper()
	closeQueue()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := q.Take(ctx)
	for _, want := range append([]error{worker.ErrQueueClosed}, also...) {
		if d != nil || !errors.Is(err, want) {
			t.Fatalf("Take on a closed queue = %v, %v; want an error wrapping %v", d, err, want)
		}
	}
}
