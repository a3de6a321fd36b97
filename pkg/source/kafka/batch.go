package kafka

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// DefaultBatchWindow is Config.BatchWindow's default.
const DefaultBatchWindow = 10 * time.Millisecond

// batchTimeout bounds one batch's requests; callers stop waiting earlier
// when their own context ends.
const batchTimeout = 10 * time.Second

// offsetBatcher coalesces the offset requests of one Client: the
// (topic, group) pairs measured within one window share one request for
// the start offsets of all their topics, one for the end offsets and one
// for the committed offsets of all their groups. Each queue is still
// measured on its caller's schedule.
type offsetBatcher struct {
	adm    *kadm.Client
	window time.Duration

	mu  sync.Mutex
	cur *offsetBatch

	batches atomic.Int64
}

// offsetBatch is one window's topics and groups and, once done closes,
// their offsets.
type offsetBatch struct {
	topics, groups map[string]struct{}
	done           chan struct{}

	start, end       kadm.ListedOffsets
	errStart, errEnd error
	committed        kadm.FetchOffsetsResponses
}

// fetch returns ref's offsets from the batch it joins; the errors are
// those of the three requests, unwrapped, for the caller to name.
func (b *offsetBatcher) fetch(ctx context.Context, ref QueueRef) (offsets, [3]error) {
	if b.window < 0 {
		b.batches.Add(1)
		return fetchAlone(ctx, b.adm, ref)
	}
	b.mu.Lock()
	bt := b.cur
	if bt == nil {
		bt = &offsetBatch{topics: map[string]struct{}{}, groups: map[string]struct{}{}, done: make(chan struct{})}
		b.cur = bt
		go b.run(bt)
	}
	bt.topics[ref.Topic] = struct{}{}
	bt.groups[ref.Group] = struct{}{}
	b.mu.Unlock()
	select {
	case <-bt.done:
	case <-ctx.Done():
		return offsets{}, [3]error{ctx.Err(), nil, nil}
	}
	o := offsets{
		start: kadm.ListedOffsets{ref.Topic: bt.start[ref.Topic]},
		end:   kadm.ListedOffsets{ref.Topic: bt.end[ref.Topic]},
	}
	errs := [3]error{bt.errStart, bt.errEnd, nil}
	if r, ok := bt.committed[ref.Group]; ok {
		o.committed, errs[2] = r.Fetched, r.Err
	} else {
		errs[2] = errors.New("no answer for the group")
	}
	return o, errs
}

// run closes bt's window and sends its three requests at once.
func (b *offsetBatcher) run(bt *offsetBatch) {
	time.Sleep(b.window)
	b.mu.Lock()
	if b.cur == bt {
		b.cur = nil
	}
	topics, groups := keys(bt.topics), keys(bt.groups)
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	b.batches.Add(1)
	var wg sync.WaitGroup
	wg.Go(func() { bt.start, bt.errStart = b.adm.ListStartOffsets(ctx, topics...) })
	wg.Go(func() { bt.end, bt.errEnd = b.adm.ListEndOffsets(ctx, topics...) })
	wg.Go(func() { bt.committed = b.adm.FetchManyOffsets(ctx, groups...) })
	wg.Wait()
	close(bt.done)
}

// fetchAlone asks for one queue's offsets with requests of its own.
func fetchAlone(ctx context.Context, adm *kadm.Client, ref QueueRef) (offsets, [3]error) {
	var (
		o    offsets
		errs [3]error
		wg   sync.WaitGroup
	)
	wg.Go(func() { o.start, errs[0] = adm.ListStartOffsets(ctx, ref.Topic) })
	wg.Go(func() { o.end, errs[1] = adm.ListEndOffsets(ctx, ref.Topic) })
	wg.Go(func() { o.committed, errs[2] = adm.FetchOffsets(ctx, ref.Group) })
	wg.Wait()
	return o, errs
}

// groupNeverCommitted reports the error of a group that never committed:
// every partition then counts from its start, like a partition without a
// commit.
func groupNeverCommitted(err error) bool {
	return errors.Is(err, kerr.GroupIDNotFound)
}

func keys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
