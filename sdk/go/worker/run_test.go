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
