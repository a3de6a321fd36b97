package redis

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// DefaultBatchWindow is Config.BatchWindow's default: short against any
// polling interval, long enough that the QWorkers of one ScalerConfig
// measuring in the same few milliseconds share one round trip.
const DefaultBatchWindow = 10 * time.Millisecond

// maxBatch bounds the measurements of one pipeline, so one reply stays a
// few tens of kilobytes.
const maxBatch = 1000

// pipelineTimeout bounds one pipeline; callers stop waiting earlier when
// their own context ends.
const pipelineTimeout = 10 * time.Second

// errClosed is what a measurement of a closed Client returns.
var errClosed = errors.New("redis client closed")

// stage is one round trip's part of a measurement: add queues its commands
// on the batch's pipeline, and read, after the round trip, turns their
// replies into the measurement's result or into the stage it needs next
// (nil when done).
type stage struct {
	add  func(ctx context.Context, p goredis.Pipeliner)
	read func() *stage
}

// call is one measurement waiting for its batch.
type call struct {
	st   *stage
	done chan struct{}
}

// batcher coalesces the measurements of one Client: the first one starts a
// window, every one arriving within it (up to maxBatch) joins, and the
// batch goes to Redis as one pipeline. Measurements still run on their
// callers' schedules; they only share the trip.
type batcher struct {
	rdb    *goredis.Client
	window time.Duration
	calls  chan *call
	// slots bounds the pipelines in flight to the connection pool.
	slots chan struct{}
	ctx   context.Context
	stop  context.CancelFunc

	roundTrips   atomic.Int64
	measurements atomic.Int64
}

func newBatcher(rdb *goredis.Client, window time.Duration, pool int) *batcher {
	ctx, stop := context.WithCancel(context.Background())
	b := &batcher{rdb: rdb, window: window, calls: make(chan *call), slots: make(chan struct{}, max(pool, 1)), ctx: ctx, stop: stop}
	if window > 0 {
		go b.run()
	}
	return b
}

func (b *batcher) close() { b.stop() }

// do runs st (and the stages it leads to) in a batch and returns when its
// last read ran, or with ctx's error when the caller stops waiting first
// (the batch then finishes without it).
func (b *batcher) do(ctx context.Context, st *stage) error {
	c := &call{st: st, done: make(chan struct{})}
	if b.window <= 0 {
		if b.ctx.Err() != nil {
			return errClosed
		}
		b.exec([]*call{c})
		return nil
	}
	select {
	case b.calls <- c:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.ctx.Done():
		return errClosed
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run gathers batches until the Client closes.
func (b *batcher) run() {
	for {
		var first *call
		select {
		case first = <-b.calls:
		case <-b.ctx.Done():
			return
		}
		batch := b.gather(first)
		select {
		case b.slots <- struct{}{}:
		case <-b.ctx.Done():
			b.exec(batch) // fails at once: its callers learn it
			return
		}
		go func() {
			defer func() { <-b.slots }()
			b.exec(batch)
		}()
	}
}

// gather collects the calls arriving within the window after first.
func (b *batcher) gather(first *call) []*call {
	batch := []*call{first}
	timer := time.NewTimer(b.window)
	defer timer.Stop()
	for len(batch) < maxBatch {
		select {
		case c := <-b.calls:
			batch = append(batch, c)
		case <-timer.C:
			return batch
		case <-b.ctx.Done():
			return batch
		}
	}
	return batch
}

// exec sends the calls' stages in one pipeline, then the follow-up stages
// in another, until every call is done.
func (b *batcher) exec(calls []*call) {
	b.measurements.Add(int64(len(calls)))
	pending := make([]*call, len(calls))
	copy(pending, calls)
	for len(pending) > 0 {
		b.roundTrip(pending)
		next := pending[:0]
		for _, c := range pending {
			if c.st = c.st.read(); c.st != nil {
				next = append(next, c)
			} else {
				close(c.done)
			}
		}
		pending = next
	}
}

// roundTrip sends the current stage of every call as one pipeline. Errors
// are left on each command for its stage to read.
func (b *batcher) roundTrip(calls []*call) {
	ctx, cancel := context.WithTimeout(b.ctx, pipelineTimeout)
	defer cancel()
	p := b.rdb.Pipeline()
	for _, c := range calls {
		c.st.add(ctx, p)
	}
	_, _ = p.Exec(ctx)
	b.roundTrips.Add(1)
}

// scriptCmd queues script by its SHA, or by its body when full is set (the
// server did not have it cached: a restart or SCRIPT FLUSH).
func scriptCmd(ctx context.Context, p goredis.Pipeliner, s *goredis.Script, full bool, keys []string, args ...any) *goredis.Cmd {
	if full {
		return s.Eval(ctx, p, keys, args...)
	}
	return s.EvalSha(ctx, p, keys, args...)
}

// noScript reports an EVALSHA the server could not run for want of the script.
func noScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}
