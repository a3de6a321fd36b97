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
package kafkaq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

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
	return &Queue{cl: cl, settle: settleTimeout(opts)}, nil
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
			return &delivery{cl: q.cl, r: recs[0]}, nil
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
	q.cl.AllowRebalance() // a held record must not block the leave
	err := q.cl.LeaveGroupContext(ctx)
	q.cl.Close()
	if err != nil {
		return fmt.Errorf("kafka leave group: %w", err)
	}
	return nil
}

type delivery struct {
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
	return nil
}

// Return commits nothing and rewinds the partition to the record, so it is
// fetched again, then lets the group rebalance.
func (d *delivery) Return(context.Context) error {
	defer d.cl.AllowRebalance()
	d.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{
		d.r.Topic: {d.r.Partition: {Epoch: -1, Offset: d.r.Offset}},
	})
	return nil
}
