// Package kafkaq is an at-least-once Kafka consumer for Swell workers,
// built on franz-go's kgo.
//
// Every pod of a QWorker joins one consumer group, and a member joining or
// leaving moves only the partitions that must move: with the classic
// protocol through the cooperative-sticky assignor, with KIP-848's
// (Options.Protocol) through the broker, which suits a pool that scales
// all the time better (see ConsumerProtocol). Auto-commit is off: a
// record's offset is committed, and waited for, when the worker acks it,
// and only then. The consumer holds one record at a time and blocks
// rebalances while it does, so a partition never changes owner between
// taking a record and committing it: whatever was acked is committed
// before a partition is revoked, and nothing else is.
//
// Kafka has no per-record negative acknowledgement. Return rewinds the
// record's partition to the record, so it is the next one fetched from that
// partition: by this consumer if it keeps taking, or, if it leaves the
// group instead, by the partition's next owner, which starts from the last
// committed offset (before the record). Records a consumer fetched but
// never took are not committed either, so they too go to the next owner.
// A consumer that dies mid-task loses the group after its session timeout,
// and the record it held is consumed again by the partition's next owner.
//
// Kafka keeps no per-record delivery count, so the consumer counts
// failures itself, in memory, per partition and offset. After a failure the
// record's partition is paused for a doubling backoff (Options.Backoff) and
// rewound to the record, while the consumer goes on with its other
// partitions (a resumed partition joins the next fetch, so on an otherwise
// idle consumer the record comes back up to kgo's FetchMaxWait, 5 s,
// after the pause). After Options.MaxAttempts failures the record is produced to
// the dead-letter topic (Options.DeadLetterTopic, by default
// "<topic>.dead", created with the broker's defaults when missing) with its
// key, value and headers plus swell-original-topic,
// swell-original-partition, swell-original-offset, swell-attempts and
// swell-last-error; once the broker acknowledged that record, its offset
// is committed. The count lives in the member that took the record: when
// the partition moves to another member (a rebalance, a worker that died)
// the count starts again there, and a record that kills its worker every
// time is never counted.
package kafkaq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/swell-autoscaler/swell/sdk/go/queue/retry"
	"github.com/swell-autoscaler/swell/sdk/go/worker"
)

// Options say which group and topic to consume and tune the consumer.
type Options struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// Topic is the topic to consume (the QWorker's queue).
	Topic string
	// Group is the consumer group every worker of the QWorker joins.
	Group string
	// SessionTimeout is how long the group waits for a member that stopped
	// heartbeating (a killed worker) before reassigning its partitions; 0
	// keeps kgo's default (45s). It must lie within the broker's
	// group.min/max.session.timeout.ms. It applies to ClassicProtocol only:
	// with ConsumerProtocol the broker's group.consumer.session.timeout.ms
	// (or the group's consumer.session.timeout.ms) decides.
	SessionTimeout time.Duration
	// Protocol is the consumer-group protocol; "" is ClassicProtocol.
	Protocol GroupProtocol
	// RebalanceTimeout is how long a classic-protocol rebalance may wait
	// for the members to rejoin, which is also how long an ack may wait
	// for its commit during one; 0 keeps kgo's default (60s). ClassicProtocol
	// only.
	RebalanceTimeout time.Duration
	// MaxAttempts is how many times a record may fail before it goes to
	// the dead-letter topic; 0 means DefaultMaxAttempts, negative means
	// never dead-letter.
	MaxAttempts int
	// Backoff is how long a failed record's partition pauses before the
	// record is fetched again, doubled per failure up to MaxBackoff; 0
	// means DefaultBackoff, negative means none.
	Backoff time.Duration
	// MaxBackoff caps Backoff; 0 means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// DeadLetterTopic receives the records that failed MaxAttempts times;
	// "" means DeadLetterTopic(Topic).
	DeadLetterTopic string
	// Logger receives retry and dead-letter logs; nil is slog.Default.
	Logger *slog.Logger
}

// Defaults of Options, the same on every broker (package retry).
const (
	DefaultMaxAttempts = retry.DefaultMaxAttempts
	DefaultBackoff     = retry.DefaultBackoff
	DefaultMaxBackoff  = retry.DefaultMaxBackoff
)

// Headers of a dead-lettered record, besides the original's own.
const (
	HeaderTopic     = "swell-original-topic"
	HeaderPartition = "swell-original-partition"
	HeaderOffset    = "swell-original-offset"
	HeaderAttempts  = "swell-attempts"
	HeaderError     = "swell-last-error"
)

// maxErrorLen bounds HeaderError.
const maxErrorLen = 1024

// DeadLetterTopic is the default dead-letter topic of topic.
func DeadLetterTopic(topic string) string { return topic + ".dead" }

func (o Options) withDefaults() Options {
	if o.DeadLetterTopic == "" {
		o.DeadLetterTopic = DeadLetterTopic(o.Topic)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// defaultRebalanceTimeout is kgo's rebalance timeout when
// Options.RebalanceTimeout is 0.
const defaultRebalanceTimeout = 60 * time.Second

// settleMargin is how much longer than the rebalance timeout an ack may
// wait for its commit: the rejoin, then the commit's own round trip.
const settleMargin = 10 * time.Second

// GroupProtocol is how the group's members agree on who consumes which
// partition.
type GroupProtocol string

const (
	// ClassicProtocol is JoinGroup/SyncGroup with the cooperative-sticky
	// assignor run by one member: every Kafka version has it, but a member
	// joining or leaving makes every member rejoin, and commits wait until
	// the rejoin is over.
	ClassicProtocol GroupProtocol = "classic"
	// ConsumerProtocol is KIP-848's protocol: the broker assigns partitions
	// and moves them one member at a time over heartbeats, with no
	// group-wide barrier, so churn (pods starting, retiring, dying) does
	// not stall the other members. It needs Kafka 4.0 or later (franz-go
	// recommends 4.3+, where a commit racing a reassignment cannot fail
	// with STALE_MEMBER_EPOCH); on an older broker the client falls back
	// to the classic protocol with the (eager) sticky assignor.
	ConsumerProtocol GroupProtocol = "consumer"
)

// Queue is one member of a consumer group.
type Queue struct {
	cl     *kgo.Client
	settle time.Duration
	opts   Options
	retry  retry.Policy
	log    *slog.Logger

	mu      sync.Mutex
	failing map[partition]failure // the record of a partition that failed last, and how often
	timers  map[*time.Timer]bool  // pending resumes of paused partitions
	closed  bool

	acked, retried, dead atomic.Int64
	dlqChecked           atomic.Bool // the dead-letter topic exists
}

// partition is a topic's partition.
type partition struct {
	topic string
	id    int32
}

// failure counts the failures of the record at offset.
type failure struct {
	offset   int64
	attempts int
}

// Counters are what a Queue did since it opened, for metrics.
type Counters struct {
	Acked, Retried, DeadLettered int64
}

// DeadLettered is how many tasks the queue dead-lettered so far; the
// worker reports it on its pod (worker.DeadLetterCounter).
func (q *Queue) DeadLettered() int64 { return q.dead.Load() }

var _ worker.DeadLetterCounter = (*Queue)(nil)

// Counters reports what the queue did so far.
func (q *Queue) Counters() Counters {
	return Counters{Acked: q.acked.Load(), Retried: q.retried.Load(), DeadLettered: q.dead.Load()}
}

// New joins opts.Group on opts.Topic. A group that never committed starts
// at the oldest record. extra options are appended to the ones New sets
// (e.g. TLS or SASL), and must not turn auto-commit back on.
func New(opts Options, extra ...kgo.Opt) (*Queue, error) {
	if len(opts.Brokers) == 0 || opts.Topic == "" || opts.Group == "" {
		return nil, errors.New("kafkaq: brokers, topic and group are required")
	}
	kopts := []kgo.Opt{
		kgo.SeedBrokers(opts.Brokers...),
		kgo.ConsumerGroup(opts.Group),
		kgo.ConsumeTopics(opts.Topic),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}
	switch opts.Protocol {
	case "", ClassicProtocol:
		kopts = append(kopts, kgo.Balancers(kgo.CooperativeStickyBalancer()))
	case ConsumerProtocol:
		kopts = append(kopts, kgo.Balancers(kgo.StickyBalancer()), kgo.ServerSideBalancer())
	default:
		return nil, fmt.Errorf("kafkaq: unknown group protocol %q (want %q or %q)", opts.Protocol, ClassicProtocol, ConsumerProtocol)
	}
	if opts.SessionTimeout > 0 {
		kopts = append(kopts, kgo.SessionTimeout(opts.SessionTimeout))
	}
	if opts.RebalanceTimeout > 0 {
		kopts = append(kopts, kgo.RebalanceTimeout(opts.RebalanceTimeout))
	}
	cl, err := kgo.NewClient(append(kopts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	opts = opts.withDefaults()
	policy := retry.Policy{MaxAttempts: opts.MaxAttempts, Backoff: opts.Backoff, MaxBackoff: opts.MaxBackoff}.WithDefaults()
	return &Queue{cl: cl, settle: settleTimeout(opts), opts: opts, retry: policy, log: opts.Logger.With("topic", opts.Topic),
		failing: map[partition]failure{}, timers: map[*time.Timer]bool{}}, nil
}

// settleTimeout is how long an ack may need: on the classic protocol kgo
// holds a commit until the member's rejoin is over, so up to the rebalance
// timeout plus a margin; on KIP-848's, the worker's default.
func settleTimeout(opts Options) time.Duration {
	if opts.Protocol == ConsumerProtocol {
		return 0
	}
	rebalance := opts.RebalanceTimeout
	if rebalance <= 0 {
		rebalance = defaultRebalanceTimeout
	}
	return rebalance + settleMargin
}

// SettleTimeout is the bound worker.Run gives each Ack and Return when its
// Options.SettleTimeout is 0 (worker.SettleTimeouter): above the longest a
// classic-protocol rebalance can hold a commit, so a finished task's ack
// is not cut short and the task run again; 0 (the worker's default) on
// KIP-848's protocol, where commits do not wait for the group.
func (q *Queue) SettleTimeout() time.Duration { return q.settle }

// Take polls one record. Until the record is acked or returned, the group
// cannot rebalance this member's partitions away. Take returns an error
// when the client was closed or a fetch failed.
func (q *Queue) Take(ctx context.Context) (worker.Delivery, error) {
	for ctx.Err() == nil {
		fetches := q.cl.PollRecords(ctx, 1)
		recs := fetches.Records()
		if len(recs) > 0 {
			return &delivery{q: q, cl: q.cl, r: recs[0]}, nil
		}
		q.cl.AllowRebalance()
		if fetches.IsClientClosed() {
			return nil, fmt.Errorf("kafka poll: %w: %w", worker.ErrQueueClosed, kgo.ErrClientClosed)
		}
		if err := fetchErr(fetches); err != nil && ctx.Err() == nil {
			return nil, err
		}
	}
	return nil, nil
}

// fetchErr is the first fetch error that is not the poll's own context.
func fetchErr(fetches kgo.Fetches) error {
	for _, fe := range fetches.Errors() {
		if errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, context.DeadlineExceeded) {
			continue
		}
		return fmt.Errorf("kafka fetch %s[%d]: %w", fe.Topic, fe.Partition, fe.Err)
	}
	return nil
}

// Close leaves the group (its partitions go to the other members, from
// the committed offsets) and closes the client. A record taken and not yet
// settled is not committed: it goes to the partition's next owner.
func (q *Queue) Close(ctx context.Context) error {
	q.mu.Lock()
	q.closed = true
	for tm := range q.timers {
		tm.Stop()
	}
	q.mu.Unlock()
	q.cl.AllowRebalance() // a held record must not block the leave
	err := q.cl.LeaveGroupContext(ctx)
	q.cl.Close()
	if err != nil {
		return fmt.Errorf("kafka leave group: %w", err)
	}
	return nil
}

type delivery struct {
	q  *Queue
	cl *kgo.Client
	r  *kgo.Record
}

// ID is topic[partition]@offset.
func (d *delivery) ID() string {
	return d.r.Topic + "[" + strconv.Itoa(int(d.r.Partition)) + "]@" + strconv.FormatInt(d.r.Offset, 10)
}

func (d *delivery) Body() []byte { return d.r.Value }

// Ack commits the offset after the record and waits for the commit, then
// lets the group rebalance.
func (d *delivery) Ack(ctx context.Context) error {
	defer d.cl.AllowRebalance()
	if err := d.cl.CommitRecords(ctx, d.r); err != nil {
		return fmt.Errorf("kafka commit %s: %w", d.ID(), err)
	}
	d.q.forget(d.r)
	d.q.acked.Add(1)
	return nil
}

// Return counts a failed attempt: see Fail.
func (d *delivery) Return(ctx context.Context) error { return d.Fail(ctx, nil) }

// Fail counts a failed attempt of the record. Before MaxAttempts it pauses
// the record's partition for the backoff and rewinds it to the record (so
// it is fetched again, first, once the pause ends) and commits nothing.
// At MaxAttempts it produces the record to the dead-letter topic, waits
// for the broker, and commits its offset; when the produce fails the
// record is rewound and paused as for a retry, so it is not lost. Either
// way the group may rebalance afterwards.
func (d *delivery) Fail(ctx context.Context, cause error) error {
	defer d.cl.AllowRebalance()
	q := d.q
	n := q.count(d.r)
	if q.retry.Dead(n) {
		if err := q.deadLetter(ctx, d.r, n, cause); err != nil {
			q.rewind(d.r, q.retry.MaxBackoff)
			return fmt.Errorf("kafka dead-letter %s (kept, retried after %s): %w", d.ID(), q.retry.MaxBackoff, err)
		}
		q.forget(d.r)
		q.dead.Add(1)
		q.log.Error("task dead-lettered", "task", d.ID(), "attempts", n, "deadLetterTopic", q.opts.DeadLetterTopic, "err", cause)
		// Committed past the record, which is safe in the dead-letter
		// topic; were the commit to fail, the next commit on this
		// partition covers it, or the record runs once more.
		if err := d.cl.CommitRecords(ctx, d.r); err != nil {
			return fmt.Errorf("kafka commit dead-lettered %s: %w", d.ID(), err)
		}
		return nil
	}
	wait := q.retry.Wait(n)
	q.rewind(d.r, wait)
	q.retried.Add(1)
	q.log.Warn("task failed; retrying", "task", d.ID(), "attempts", n, "maxAttempts", q.retry.MaxAttempts, "backoff", wait, "err", cause)
	return nil
}

// count records one more failure of r and returns how many it has had.
func (q *Queue) count(r *kgo.Record) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	p := partition{r.Topic, r.Partition}
	f := q.failing[p]
	if f.offset != r.Offset {
		f = failure{offset: r.Offset}
	}
	f.attempts++
	q.failing[p] = f
	return f.attempts
}

// forget drops r's failure count once it was committed.
func (q *Queue) forget(r *kgo.Record) {
	q.mu.Lock()
	defer q.mu.Unlock()
	p := partition{r.Topic, r.Partition}
	if f, ok := q.failing[p]; ok && f.offset <= r.Offset {
		delete(q.failing, p)
	}
}

// rewind pauses r's partition for wait (none when wait is 0) and sets its
// fetch position back to r.
func (q *Queue) rewind(r *kgo.Record, wait time.Duration) {
	parts := map[string][]int32{r.Topic: {r.Partition}}
	if wait > 0 {
		q.cl.PauseFetchPartitions(parts)
		q.resumeAfter(wait, parts)
	}
	q.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{
		r.Topic: {r.Partition: {Epoch: -1, Offset: r.Offset}},
	})
}

// resumeAfter resumes fetching parts after wait, unless the queue closed.
func (q *Queue) resumeAfter(wait time.Duration, parts map[string][]int32) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	var tm *time.Timer
	tm = time.AfterFunc(wait, func() {
		q.mu.Lock()
		delete(q.timers, tm)
		closed := q.closed
		q.mu.Unlock()
		if !closed {
			q.cl.ResumeFetchPartitions(parts)
		}
	})
	q.timers[tm] = true
}

// deadLetter produces r to the dead-letter topic and waits for the broker
// to acknowledge it. Before the first, it creates the topic (the broker's
// default partitions and replication) unless it exists.
func (q *Queue) deadLetter(ctx context.Context, r *kgo.Record, attempts int, cause error) error {
	if !q.dlqChecked.Load() {
		q.createDeadLetterTopic(ctx)
	}
	if err := q.cl.ProduceSync(ctx, deadLetterRecord(r, q.opts.DeadLetterTopic, attempts, cause)).FirstErr(); err != nil {
		return fmt.Errorf("produce to %s: %w", q.opts.DeadLetterTopic, err)
	}
	return nil
}

// createDeadLetterTopic creates the dead-letter topic; when that fails
// for another reason than its existing (no permission to create topics,
// say), the produce that follows says whether it is there.
func (q *Queue) createDeadLetterTopic(ctx context.Context) {
	resp, err := kadm.NewClient(q.cl).CreateTopic(ctx, -1, -1, nil, q.opts.DeadLetterTopic)
	if err == nil {
		err = resp.Err
	}
	switch {
	case err == nil:
		q.log.Info("created the dead-letter topic", "deadLetterTopic", q.opts.DeadLetterTopic)
	case errors.Is(err, kerr.TopicAlreadyExists):
	default:
		q.log.Warn("could not create the dead-letter topic; producing to it anyway", "deadLetterTopic", q.opts.DeadLetterTopic, "err", err)
		return
	}
	q.dlqChecked.Store(true)
}

// deadLetterRecord is r for the dead-letter topic: its key, value and
// headers, plus where it came from, how often it failed and why.
func deadLetterRecord(r *kgo.Record, topic string, attempts int, cause error) *kgo.Record {
	headers := append([]kgo.RecordHeader(nil), r.Headers...)
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderPartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
		kgo.RecordHeader{Key: HeaderOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
		kgo.RecordHeader{Key: HeaderAttempts, Value: []byte(strconv.Itoa(attempts))},
	)
	if cause != nil {
		msg := cause.Error()
		if len(msg) > maxErrorLen {
			msg = msg[:maxErrorLen]
		}
		headers = append(headers, kgo.RecordHeader{Key: HeaderError, Value: []byte(msg)})
	}
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: headers}
}
