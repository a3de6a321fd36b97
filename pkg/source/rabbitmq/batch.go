package rabbitmq

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultBatchWindow is Config.BatchWindow's default.
const DefaultBatchWindow = 10 * time.Millisecond

// statsBatcher coalesces the management requests of one Client: the
// queues measured within one window share a single request listing the
// vhost's queues (one queue alone asks for itself, so a vhost of many
// queues is not listed for one). Each queue is still measured on its
// caller's schedule.
type statsBatcher struct {
	m       *management
	vhost   string
	window  time.Duration
	timeout time.Duration

	mu  sync.Mutex
	cur *statsBatch

	requests atomic.Int64
}

// statsBatch is one window's queues and, once done closes, their figures.
type statsBatch struct {
	names   map[string]struct{}
	done    chan struct{}
	figures map[string]queueFigures
	err     error
}

// stats returns the figures of queue name, from the batch it joins.
func (b *statsBatcher) stats(ctx context.Context, name string) (queueFigures, error) {
	if b.window < 0 {
		b.requests.Add(1)
		return b.m.stats(ctx, b.vhost, name)
	}
	b.mu.Lock()
	bt := b.cur
	if bt == nil {
		bt = &statsBatch{names: map[string]struct{}{}, done: make(chan struct{})}
		b.cur = bt
		go b.run(bt)
	}
	bt.names[name] = struct{}{}
	b.mu.Unlock()
	select {
	case <-bt.done:
	case <-ctx.Done():
		return queueFigures{}, fmt.Errorf("rabbitmq management, queue %q: %w", name, ctx.Err())
	}
	if bt.err != nil {
		return queueFigures{}, bt.err
	}
	f, ok := bt.figures[name]
	if !ok {
		return queueFigures{}, fmt.Errorf("rabbitmq management GET queues of vhost %q: queue %q not listed", b.vhost, name)
	}
	return f, nil
}

// run closes bt's window and asks the management API for its queues.
func (b *statsBatcher) run(bt *statsBatch) {
	time.Sleep(b.window)
	b.mu.Lock()
	if b.cur == bt {
		b.cur = nil
	}
	names := make([]string, 0, len(bt.names))
	for n := range bt.names {
		names = append(names, n)
	}
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	b.requests.Add(1)
	if len(names) == 1 {
		var f queueFigures
		f, bt.err = b.m.stats(ctx, b.vhost, names[0])
		bt.figures = map[string]queueFigures{names[0]: f}
	} else {
		bt.figures, bt.err = b.m.vhostStats(ctx, b.vhost)
	}
	close(bt.done)
}
