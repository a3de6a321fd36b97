package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"
)

// scriptedQueue answers Take from a list of results, then blocks until ctx
// ends.
type scriptedQueue struct {
	errs  []error
	takes int
}

func (q *scriptedQueue) Take(ctx context.Context) (Delivery, error) {
	q.takes++
	if len(q.errs) > 0 {
		err := q.errs[0]
		q.errs = q.errs[1:]
		return nil, err
	}
	<-ctx.Done()
	return nil, nil
}

func TestLoopStopsOnlyWhenTheQueueClosedForGood(t *testing.T) {
	closed := fmt.Errorf("channel gone: %w", ErrQueueClosed)
	for name, tc := range map[string]struct {
		errs      []error
		wantErr   error
		wantTakes int
	}{
		"closed at once":          {errs: []error{closed}, wantErr: ErrQueueClosed, wantTakes: 1},
		"transient, then closed":  {errs: []error{errors.New("timeout"), closed}, wantErr: ErrQueueClosed, wantTakes: 2},
		"transient errors retry":  {errs: []error{errors.New("timeout")}, wantTakes: 2},
		"context ends, no errors": {wantTakes: 1},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			q := &scriptedQueue{errs: tc.errs}
			w := &Worker{queue: q, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			err := w.loop(ctx, newLifecycle(Identity{}, nil, nil, false), func(context.Context, []byte) error { return nil })
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("loop() = %v, want %v", err, tc.wantErr)
			}
			if q.takes != tc.wantTakes {
				t.Fatalf("Take called %d times, want %d", q.takes, tc.wantTakes)
			}
		})
	}
}

// settleDelivery records the deadline its Ack or Return was given and,
// when block is set, waits until that context ends, like a Kafka commit
// held by a rebalance.
type settleDelivery struct {
	block bool
	given time.Duration
}

func (d *settleDelivery) ID() string                       { return "t" }
func (d *settleDelivery) Body() []byte                     { return nil }
func (d *settleDelivery) Ack(ctx context.Context) error    { return d.settle(ctx) }
func (d *settleDelivery) Return(ctx context.Context) error { return d.settle(ctx) }

func (d *settleDelivery) settle(ctx context.Context) error {
	deadline, _ := ctx.Deadline()
	d.given = time.Until(deadline)
	if !d.block {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

// settleQueue is a Queue that asks for its own settle bound, as kafkaq on
// the classic protocol does.
type settleQueue time.Duration

func (settleQueue) Take(context.Context) (Delivery, error) { return nil, nil }
func (q settleQueue) SettleTimeout() time.Duration         { return time.Duration(q) }

func TestSettleTimeoutBoundsAckAndReturn(t *testing.T) {
	failing := errors.New("handler failed")
	for name, tc := range map[string]struct {
		timeout   time.Duration
		queue     Queue
		block     bool
		handleErr error
		// The settle call is given at most want (and, for a long want,
		// more than half of it: a loaded machine may stall a moment).
		want        time.Duration
		wantOutcome error
	}{
		"default":                   {want: DefaultSettleTimeout},
		"configured ack times out":  {timeout: 50 * time.Millisecond, block: true, want: 50 * time.Millisecond, wantOutcome: context.DeadlineExceeded},
		"configured return":         {timeout: 50 * time.Millisecond, handleErr: failing, want: 50 * time.Millisecond, wantOutcome: failing},
		"configured ack in time":    {timeout: time.Minute, want: time.Minute},
		"the queue's own bound":     {queue: settleQueue(70 * time.Second), want: 70 * time.Second},
		"configured over the queue": {timeout: time.Minute, queue: settleQueue(70 * time.Second), want: time.Minute},
	} {
		t.Run(name, func(t *testing.T) {
			d := &settleDelivery{block: tc.block}
			var outcome error
			w := &Worker{queue: tc.queue, log: slog.New(slog.NewTextHandler(io.Discard, nil)), opts: Options{
				SettleTimeout: tc.timeout,
				OnTask:        func(_ string, err error) { outcome = err },
			}}
			w.process(context.Background(), d, func(context.Context, []byte) error { return tc.handleErr })
			lower := tc.want / 2
			if tc.want < time.Second {
				lower = 0
			}
			if d.given > tc.want || d.given <= lower {
				t.Fatalf("settle was given %v, want %v", d.given, tc.want)
			}
			if !errors.Is(outcome, tc.wantOutcome) || (tc.wantOutcome == nil && outcome != nil) {
				t.Fatalf("OnTask got %v, want %v", outcome, tc.wantOutcome)
			}
		})
	}
}

// failerDelivery records how it was settled.
type failerDelivery struct {
	settleDelivery
	cause    error
	returned bool
}

func (d *failerDelivery) Fail(_ context.Context, cause error) error { d.cause = cause; return nil }
func (d *failerDelivery) Return(context.Context) error              { d.returned = true; return nil }

// TestFailedTaskGoesToFailWithItsError: a delivery that keeps why its task
// failed (Failer) is given the handler's error instead of a bare Return.
func TestFailedTaskGoesToFailWithItsError(t *testing.T) {
	failing := errors.New("handler failed")
	d := &failerDelivery{}
	w := &Worker{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	w.process(context.Background(), d, func(context.Context, []byte) error { return failing })
	if !errors.Is(d.cause, failing) || d.returned {
		t.Fatalf("Fail got %v, Return called %v; want Fail with the handler's error and no Return", d.cause, d.returned)
	}
}
