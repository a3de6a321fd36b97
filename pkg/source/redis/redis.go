// Package redis measures Redis queues: the length of a list (QScaler's
// LPUSH/BRPOP queues) or the backlog of a stream consumer group (entries not
// yet delivered plus entries delivered and not acknowledged). One Client per
// connection configuration is shared by every queue measured through it, and
// keyspace notifications can wake the scaling loop the moment a queue
// changes.
package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"k8s.io/utils/clock"

	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
)

// DefaultPort is Redis's port, used when Config.Port is 0.
const DefaultPort = 6379

// defaultDialTimeout bounds connecting, so a dead host fails a Measure
// quickly instead of holding a reconcile worker.
const defaultDialTimeout = 5 * time.Second

// Config says how to reach one Redis server (a ScalerConfig of type redis).
// Credentials are values: the controller resolves Secrets before calling New.
type Config struct {
	// Host is the server's name or address (required).
	Host string
	// Port defaults to 6379.
	Port int
	// Username is the ACL user; empty means "default".
	Username string
	// Password authenticates (AUTH); empty when the server has none.
	Password brokerconn.Secret
	// DB is the database number (SELECT), 0..n.
	DB int
	// TLS options; zero means plain TCP.
	TLS brokerconn.TLS
	// KeyspaceNotifications lets New turn on keyspace notifications for
	// lists and streams on the server (CONFIG SET notify-keyspace-events,
	// adding the K, l and t flags to whatever is set). Push (Watch) needs
	// those flags; without this option they must be set on the server
	// already, since Swell does not change server configuration unasked.
	KeyspaceNotifications bool
	// DialTimeout bounds connecting (default 5s).
	DialTimeout time.Duration
	// BatchWindow is how long a measurement waits for measurements of
	// other queues of the same Client to share its round trip: every
	// measurement started within the window goes to Redis in one pipeline
	// (default DefaultBatchWindow; negative sends each measurement alone).
	// A thousand QWorkers polling every second then cost Redis about
	// 1 s ÷ window round trips a second instead of a thousand.
	BatchWindow time.Duration
	// NotifyRecheck is how long a read of the server's
	// notify-keyspace-events (checked before each Watch) is trusted
	// (default DefaultNotifyRecheck); a new connection reads it again.
	NotifyRecheck time.Duration
	// Clock times NotifyRecheck (default: the real clock).
	Clock clock.PassiveClock
	// Dial, when set, opens every TCP connection (the egress policy's
	// dialer for user-configured addresses); nil dials directly.
	Dial brokerconn.DialFunc
}

// Validate reports every invalid field, each message naming it.
func (c Config) Validate() error {
	var errs []error
	if c.Host == "" {
		errs = append(errs, errors.New("redis config: host is required"))
	}
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("redis config: port %d is out of range; use 1..65535 (0 means %d)", c.Port, DefaultPort))
	}
	if c.DB < 0 {
		errs = append(errs, fmt.Errorf("redis config: db %d is negative; use 0 or more", c.DB))
	}
	if c.DialTimeout < 0 {
		errs = append(errs, fmt.Errorf("redis config: dialTimeout %s is negative", c.DialTimeout))
	}
	if c.NotifyRecheck < 0 {
		errs = append(errs, fmt.Errorf("redis config: notifyRecheck %s is negative", c.NotifyRecheck))
	}
	if err := c.TLS.Validate("tls"); err != nil {
		errs = append(errs, fmt.Errorf("redis config: %w", err))
	}
	return errors.Join(errs...)
}

func (c Config) addr() string {
	port := c.Port
	if port == 0 {
		port = DefaultPort
	}
	return net.JoinHostPort(c.Host, strconv.Itoa(port))
}

func (c Config) options() (*goredis.Options, error) {
	tlsCfg, err := c.TLS.Config(c.Host)
	if err != nil {
		return nil, fmt.Errorf("redis config: tls: %w", err)
	}
	dial := c.DialTimeout
	if dial == 0 {
		dial = defaultDialTimeout
	}
	var dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	retries := 0 // go-redis's default
	if c.Dial != nil {
		// go-redis skips its own TLS under a custom dialer. A refusal by
		// the dialer is final: retrying it would only hide it behind a
		// deadline.
		dialer, retries = brokerconn.WithTLS(c.Dial, tlsCfg), 1
	}
	return &goredis.Options{
		Dialer:        dialer,
		DialerRetries: retries,
		Addr:          c.addr(),
		Username:      c.Username,
		Password:      c.Password.Reveal(),
		DB:            c.DB,
		TLSConfig:     tlsCfg,
		DialTimeout:   dial,
		// A source measures; it never needs a large pool.
		PoolSize: 4,
		// Do not retry inside a Measure: the caller's poll is the retry,
		// and a failing broker must surface as an error quickly.
		MaxRetries: -1,
	}, nil
}

// Client is the shared connection to one Redis server. It is safe for
// concurrent use by any number of sources.
type Client struct {
	cfg   Config
	rdb   *goredis.Client
	notes *notifier
	flags *flagsCache
	batch *batcher
}

// New connects to the server, checks it answers, and turns on keyspace
// notifications when the Config asks.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	flags := &flagsCache{clock: cfg.Clock, recheck: cfg.NotifyRecheck}
	if flags.clock == nil {
		flags.clock = clock.RealClock{}
	}
	if flags.recheck == 0 {
		flags.recheck = DefaultNotifyRecheck
	}
	// A new connection may reach a restarted server with other settings.
	opts.OnConnect = func(context.Context, *goredis.Conn) error {
		flags.forget()
		return nil
	}
	rdb := goredis.NewClient(opts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis %s: PING: %w", opts.Addr, err)
	}
	window := cfg.BatchWindow
	if window == 0 {
		window = DefaultBatchWindow
	}
	c := &Client{cfg: cfg, rdb: rdb, notes: newNotifier(rdb), flags: flags, batch: newBatcher(rdb, window, opts.PoolSize)}
	if cfg.KeyspaceNotifications {
		if err := c.enableNotifications(ctx); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Stats counts what a Client asked of Redis, for metrics, tests and
// benchmarks.
type Stats struct {
	// RoundTrips is the number of pipelines measurements sent: one per
	// batch of measurements, plus one for each stream whose oldest entry's
	// age was asked.
	RoundTrips int64
	// Measurements is the number of measurements those pipelines carried.
	Measurements int64
	// NotifyReads is the number of CONFIG GETs of notify-keyspace-events
	// sent by Watch.
	NotifyReads int
}

// Stats returns the Client's counts so far.
func (c *Client) Stats() Stats {
	c.flags.mu.Lock()
	reads := c.flags.reads
	c.flags.mu.Unlock()
	return Stats{RoundTrips: c.batch.roundTrips.Load(), Measurements: c.batch.measurements.Load(), NotifyReads: reads}
}

// Close closes the connection; sources made from it stop working and their
// Watch calls return.
func (c *Client) Close() error {
	c.notes.close()
	c.batch.close()
	if err := c.rdb.Close(); err != nil {
		return fmt.Errorf("redis close: %w", err)
	}
	return nil
}

// QueueRef names a queue. With Group empty, Key is a list and its length is
// the backlog; with Group set, Key is a stream and the backlog is the
// group's lag plus its pending entries.
type QueueRef struct {
	Key   string
	Group string
	// Owner, "<namespace>/<qworker>", limits the tasks of dead SDK workers
	// counted for a list (see pkg/source/redis/reliable) to that QWorker's;
	// empty counts every QWorker's.
	Owner string
}

// Validate checks the reference.
func (r QueueRef) Validate() error {
	if r.Key == "" {
		return errors.New("redis queue: key is required")
	}
	return nil
}

// Queue returns the source measuring one queue. The source also implements
// source.Pusher (keyspace notifications).
func (c *Client) Queue(ref QueueRef) (source.Source, error) {
	if err := ref.Validate(); err != nil {
		return nil, err
	}
	return &queueSource{c: c, ref: ref, channel: keyspaceChannel(c.cfg.DB, ref.Key)}, nil
}

// queueSource measures one list or stream of a shared Client.
type queueSource struct {
	c       *Client
	ref     QueueRef
	channel string
}

var (
	_ source.Source = (*queueSource)(nil)
	_ source.Pusher = (*queueSource)(nil)
)

// Measure asks Redis now: LLEN for a list (with the tasks held by dead
// SDK workers), XINFO GROUPS for a stream, in the pipeline the Client's
// batch sends (see Config.BatchWindow).
func (s *queueSource) Measure(ctx context.Context) (source.Sample, error) {
	now := time.Now()
	if s.ref.Group == "" {
		sample, _, err := s.measureList(ctx, now, nil)
		return sample, err
	}
	return s.measureStream(ctx, now)
}

// listResult is what a list measurement's stage fills in.
type listResult struct {
	sample  source.Sample
	dropped int64
	err     error
	// held is the tasks held by dead SDK workers, added to sample at the end.
	held source.Sample
}

// measureList measures a list in one round trip: its length (after
// removing every element equal to one of drop, atomically, when drop is
// set) and the tasks held by dead SDK workers.
func (s *queueSource) measureList(ctx context.Context, now time.Time, drop []any) (source.Sample, int64, error) {
	res := &listResult{sample: source.Sample{Time: now}}
	if err := s.c.batch.do(ctx, s.listStage(drop, res)); err != nil {
		return source.Sample{}, 0, s.listErr(drop, err)
	}
	if res.err != nil {
		return source.Sample{}, 0, res.err
	}
	return res.sample, res.dropped, nil
}

func (s *queueSource) listErr(drop []any, err error) error {
	if drop != nil {
		return fmt.Errorf("redis LREM+LLEN %q: %w", s.ref.Key, err)
	}
	return fmt.Errorf("redis LLEN %q: %w", s.ref.Key, err)
}

// listStage queues the list's commands. Its scripts go by SHA; one the
// server lacks goes again by body in a second round trip, alone.
func (s *queueSource) listStage(drop []any, res *listResult) *stage {
	var (
		listDone, heldDone bool
		fullDrop, fullHeld bool
		length             *goredis.IntCmd
		dropped, held      *goredis.Cmd
		heldErr            error
		st                 *stage
	)
	st = &stage{
		add: func(ctx context.Context, p goredis.Pipeliner) {
			switch {
			case listDone:
			case drop != nil:
				dropped = scriptCmd(ctx, p, dropThenLen, fullDrop, []string{s.ref.Key}, drop...)
			default:
				length = p.LLen(ctx, s.ref.Key)
			}
			if !heldDone {
				held = s.heldCmd(ctx, p, fullHeld)
			}
		},
		read: func() *stage {
			switch {
			case listDone:
			case dropped != nil && !fullDrop && noScript(dropped.Err()):
				fullDrop = true
			default:
				listDone, res.err = true, s.readList(res, length, dropped, drop)
			}
			switch {
			case heldDone:
			case !fullHeld && noScript(held.Err()):
				fullHeld = true
			default:
				heldDone, heldErr = true, s.readHeld(held, &res.held)
			}
			if !listDone || !heldDone {
				return st
			}
			if res.err == nil && heldErr != nil {
				res.err = heldErr
			}
			if res.err == nil {
				res.sample.Backlog += res.held.Backlog
				res.sample.Ready += res.held.Ready
			}
			return nil
		},
	}
	return st
}

// readList fills res from the length (or drop-then-length) reply. A list
// holds only waiting tasks: whatever a worker popped is gone from Redis,
// so nothing here is known to be in flight.
func (s *queueSource) readList(res *listResult, length *goredis.IntCmd, dropped *goredis.Cmd, drop []any) error {
	if length != nil {
		n, err := length.Result()
		if err != nil {
			return s.listErr(drop, err)
		}
		res.sample.Backlog, res.sample.Ready = n, n
		return nil
	}
	pair, err := dropped.Int64Slice()
	if err != nil {
		return s.listErr(drop, err)
	}
	if len(pair) != 2 {
		return s.listErr(drop, fmt.Errorf("unexpected reply %v", pair))
	}
	res.dropped = pair[0]
	res.sample.Backlog, res.sample.Ready = pair[1], pair[1]
	return nil
}

// streamResult is what a stream measurement's stages fill in.
type streamResult struct {
	sample source.Sample
	err    error
}

func (s *queueSource) measureStream(ctx context.Context, now time.Time) (source.Sample, error) {
	res := &streamResult{sample: source.Sample{Time: now}}
	if err := s.c.batch.do(ctx, s.streamStage(res)); err != nil {
		return source.Sample{}, fmt.Errorf("redis XINFO GROUPS %q: %w", s.ref.Key, err)
	}
	if res.err != nil {
		return source.Sample{}, res.err
	}
	return res.sample, nil
}

// streamStage asks XINFO GROUPS and, when the group lags, the age of its
// first undelivered entry in a second round trip.
func (s *queueSource) streamStage(res *streamResult) *stage {
	var groups *goredis.XInfoGroupsCmd
	return &stage{
		add: func(ctx context.Context, p goredis.Pipeliner) { groups = p.XInfoGroups(ctx, s.ref.Key) },
		read: func() *stage {
			g, err := s.readGroup(groups)
			if err != nil {
				res.err = err
				return nil
			}
			res.sample.Backlog, res.sample.Ready, res.sample.InFlight = g.Lag+g.Pending, g.Lag, g.Pending
			if g.Lag == 0 {
				return nil
			}
			// The age is a correction: a user whose ACL allows XINFO and
			// not XRANGE or TIME still gets the backlog, with age unknown.
			return s.ageStage(g.LastDeliveredID, &res.sample)
		},
	}
}

func (s *queueSource) readGroup(cmd *goredis.XInfoGroupsCmd) (goredis.XInfoGroup, error) {
	groups, err := cmd.Result()
	if err != nil {
		return goredis.XInfoGroup{}, fmt.Errorf("redis XINFO GROUPS %q: %w", s.ref.Key, err)
	}
	for _, g := range groups {
		if g.Name != s.ref.Group {
			continue
		}
		if g.Lag < 0 {
			// Redis cannot count undelivered entries when some were deleted
			// past the group's last-delivered ID; guessing could scale the
			// wrong way, so report it as unknown.
			return g, fmt.Errorf("redis XINFO GROUPS %q: lag of group %q is unknown (entries deleted from the stream after its last-delivered ID)", s.ref.Key, s.ref.Group)
		}
		return g, nil
	}
	return goredis.XInfoGroup{}, fmt.Errorf("redis XINFO GROUPS %q: consumer group %q not found", s.ref.Key, s.ref.Group)
}

// ageStage sets sample's OldestAge to the age of the group's first
// undelivered entry: the one after its last-delivered ID. An
// auto-generated entry ID starts with the server's time in milliseconds,
// and the server's own TIME, asked in the same round trip, keeps
// controller clock skew out of the age. IDs that are not timestamps (set
// by the producer) give 0 when they lie in the future; older made-up IDs
// cannot be told apart and read as old. Any error gives 0 (unknown).
func (s *queueSource) ageStage(lastDelivered string, sample *source.Sample) *stage {
	var (
		rng *goredis.XMessageSliceCmd
		clk *goredis.TimeCmd
	)
	return &stage{
		add: func(ctx context.Context, p goredis.Pipeliner) {
			rng = p.XRangeN(ctx, s.ref.Key, "("+lastDelivered, "+", 1)
			clk = p.Time(ctx)
		},
		read: func() *stage {
			msgs, now := rng.Val(), clk.Val()
			if rng.Err() != nil || clk.Err() != nil || len(msgs) == 0 {
				return nil
			}
			sample.OldestAge = source.AgeAt(now, entryTime(msgs[0].ID))
			return nil
		},
	}
}

// entryTime is the millisecond timestamp part of a stream entry ID, or the
// zero time when the ID has none.
func entryTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

// Close releases nothing: the connection belongs to the Client.
func (s *queueSource) Close() error { return nil }

// dropThenLen removes every element of the list KEYS[1] equal to one of
// ARGV, then returns the number removed and the list's length, atomically.
var dropThenLen = goredis.NewScript(`
local removed = 0
for _, v in ipairs(ARGV) do
  removed = removed + redis.call('LREM', KEYS[1], 0, v)
end
return {removed, redis.call('LLEN', KEYS[1])}
`)

// MeasureDropping is Measure for a list queue that first removes every
// element equal to one of values, in one atomic step, so none of them is
// ever counted. It returns the sample and how many elements it removed. A
// stream queue is measured as by Measure (nothing is removed). The QWorker
// controller uses it to drop the empty messages QScaler's Python SDK pushes
// back when SIGTERM finds it idle.
func (s *queueSource) MeasureDropping(ctx context.Context, values []string) (source.Sample, int64, error) {
	if s.ref.Group != "" || len(values) == 0 {
		sample, err := s.Measure(ctx)
		return sample, 0, err
	}
	args := make([]any, len(values))
	for i, v := range values {
		args[i] = v
	}
	return s.measureList(ctx, time.Now(), args)
}
