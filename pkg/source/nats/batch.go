package nats

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultBatchWindow is Config.BatchWindow's default: short against any
// measurement period, long enough for the consumers measured on one tick
// to meet.
const DefaultBatchWindow = 10 * time.Millisecond

// infoBatcher coalesces the consumer info requests of one Client, so that
// thousands of consumers do not cost a round trip each per tick: the
// consumers of one stream measured within one window share a single
// listing of the stream's consumers (CONSUMER.LIST, up to 256 consumers
// per request). One consumer alone in its window asks for itself
// (CONSUMER.INFO), so a stream of many consumers is not listed for one.
// Each consumer is still measured on its caller's schedule.
type infoBatcher struct {
	js      jetstream.JetStream
	window  time.Duration // negative: every consumer asks for itself
	timeout time.Duration // bounds each window's request or listing

	mu      sync.Mutex
	cur     map[string]*infoBatch       // the open window of each stream
	streams map[string]jetstream.Stream // handles to list, by stream name
}

// infoBatch is one stream's window: the consumers that joined it and, once
// done closes, their infos or the error they all share.
type infoBatch struct {
	stream string
	names  map[string]struct{}
	done   chan struct{}
	infos  map[string]*jetstream.ConsumerInfo
	err    error
}

func newInfoBatcher(js jetstream.JetStream, window, timeout time.Duration) *infoBatcher {
	if window == 0 {
		window = DefaultBatchWindow
	}
	return &infoBatcher{
		js: js, window: window, timeout: timeout,
		cur: map[string]*infoBatch{}, streams: map[string]jetstream.Stream{},
	}
}

// info returns the state of consumer ref from the window it joins. A
// consumer the stream's listing lacks gives jetstream.ErrConsumerNotFound,
// as asking for it alone would.
func (b *infoBatcher) info(ctx context.Context, ref QueueRef) (*jetstream.ConsumerInfo, error) {
	if b.window < 0 {
		return b.direct(ctx, ref)
	}
	bt := b.join(ref)
	select {
	case <-bt.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if bt.err != nil {
		return nil, bt.err
	}
	info, ok := bt.infos[ref.Consumer]
	if !ok {
		return nil, jetstream.ErrConsumerNotFound
	}
	return info, nil
}

// join adds ref to its stream's open window, opening one if none is.
func (b *infoBatcher) join(ref QueueRef) *infoBatch {
	b.mu.Lock()
	defer b.mu.Unlock()
	bt := b.cur[ref.Stream]
	if bt == nil {
		bt = &infoBatch{stream: ref.Stream, names: map[string]struct{}{}, done: make(chan struct{})}
		b.cur[ref.Stream] = bt
		go b.run(bt)
	}
	bt.names[ref.Consumer] = struct{}{}
	return bt
}

// run closes bt's window, then asks for its consumers: the one alone, or
// the stream's listing.
func (b *infoBatcher) run(bt *infoBatch) {
	defer close(bt.done)
	time.Sleep(b.window)
	b.mu.Lock()
	if b.cur[bt.stream] == bt {
		delete(b.cur, bt.stream)
	}
	// Closed: nobody adds to bt.names any more.
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	if len(bt.names) == 1 {
		for name := range bt.names {
			info, err := b.direct(ctx, QueueRef{Stream: bt.stream, Consumer: name})
			bt.infos, bt.err = map[string]*jetstream.ConsumerInfo{name: info}, err
		}
		return
	}
	bt.infos, bt.err = b.list(ctx, bt.stream, bt.names)
}

// direct asks for one consumer's info.
func (b *infoBatcher) direct(ctx context.Context, ref QueueRef) (*jetstream.ConsumerInfo, error) {
	cons, err := b.js.Consumer(ctx, ref.Stream, ref.Consumer)
	if err != nil {
		return nil, err
	}
	// Consumer fetched the info just now; asking again would cost a round
	// trip more.
	return cons.CachedInfo(), nil
}

// list reads the infos of the wanted consumers from one listing of the
// stream's consumers.
func (b *infoBatcher) list(ctx context.Context, stream string, want map[string]struct{}) (map[string]*jetstream.ConsumerInfo, error) {
	st, err := b.stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	lister := st.ListConsumers(ctx)
	infos := make(map[string]*jetstream.ConsumerInfo, len(want))
	for info := range lister.Info() {
		if _, ok := want[info.Name]; ok {
			infos[info.Name] = info
		}
	}
	if err := lister.Err(); err != nil {
		b.forgetStream(stream)
		return nil, fmt.Errorf("list consumers: %w", err)
	}
	return infos, nil
}

// stream is the handle to list stream's consumers, looked up once (a
// stream info request) and kept until a listing fails.
func (b *infoBatcher) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	b.mu.Lock()
	st := b.streams[name]
	b.mu.Unlock()
	if st != nil {
		return st, nil
	}
	st, err := b.js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("stream: %w", err)
	}
	b.mu.Lock()
	b.streams[name] = st
	b.mu.Unlock()
	return st, nil
}

func (b *infoBatcher) forgetStream(name string) {
	b.mu.Lock()
	delete(b.streams, name)
	b.mu.Unlock()
}

// Requests counts a Client's JetStream API requests by kind, for metrics,
// tests and benchmarks: what batching saves shows in ConsumerInfo and
// ConsumerList.
type Requests struct {
	// ConsumerInfo is requests for one consumer's state (CONSUMER.INFO).
	ConsumerInfo int64
	// ConsumerList is pages of a stream's consumers' states, up to 256
	// consumers each (CONSUMER.LIST).
	ConsumerList int64
	// StreamInfo is stream lookups (STREAM.INFO).
	StreamInfo int64
	// Total is every API request, these and the others (the message
	// lookups that date the oldest waiting message, Watch's consumers).
	Total int64
}

// requestCounter counts API requests through jetstream's client trace, so
// the counts are the requests actually sent.
type requestCounter struct {
	consumerInfo, consumerList, streamInfo, total atomic.Int64
}

// sent is a jetstream.ClientTrace RequestSent hook. Subjects carry the
// API prefix, which a JetStream domain changes; the kind follows it.
func (r *requestCounter) sent(subj string, _ []byte) {
	r.total.Add(1)
	switch {
	case strings.Contains(subj, ".CONSUMER.INFO."):
		r.consumerInfo.Add(1)
	case strings.Contains(subj, ".CONSUMER.LIST."):
		r.consumerList.Add(1)
	case strings.Contains(subj, ".STREAM.INFO."):
		r.streamInfo.Add(1)
	}
}

func (r *requestCounter) snapshot() Requests {
	return Requests{
		ConsumerInfo: r.consumerInfo.Load(),
		ConsumerList: r.consumerList.Load(),
		StreamInfo:   r.streamInfo.Load(),
		Total:        r.total.Load(),
	}
}
