// Package kafka measures a Kafka consumer group's lag on one topic: the
// records not yet consumed, summed over every partition of the topic. Kafka
// keeps no count of records handed to a consumer and not yet committed, so
// the whole lag is Ready and InFlight is always 0.
//
// Lag rule, per partition, with end the high-water mark, start the log start
// offset and committed the group's committed offset:
//
//	lag = end - max(committed, start)   when the group committed an offset
//	lag = end - start                   when it did not
//
// A partition without a commit (or a group that does not exist yet) counts
// every record still in the log, as a consumer with
// auto.offset.reset=earliest would read them all, and a commit
// older than the log start counts only records that still exist. Lag is
// never negative.
//
// One Client holds one franz-go client per configuration, shared by every
// topic measured through it.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
)

const defaultDialTimeout = 5 * time.Second

// SASL mechanisms accepted in Config.SASLMechanism.
const (
	SASLPlain       = "PLAIN"
	SASLSCRAMSHA256 = "SCRAM-SHA-256"
	SASLSCRAMSHA512 = "SCRAM-SHA-512"
)

// Config says how to reach one Kafka cluster (a ScalerConfig of type
// kafka). Credentials are values: the controller resolves Secrets before
// New.
type Config struct {
	// Brokers are bootstrap addresses, host:port (at least one).
	Brokers []string
	// ConsumerGroup is the default group for QueueRefs that name none.
	ConsumerGroup string
	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty means no
	// SASL. It needs Username and Password.
	SASLMechanism string
	Username      string
	Password      brokerconn.Secret
	// TLS options.
	TLS brokerconn.TLS
	// DialTimeout bounds connecting to a broker (default 5s).
	DialTimeout time.Duration
	// BatchWindow is how long a measurement waits for measurements of
	// other queues of the same Client to share its requests: the queues
	// measured within the window cost one ListOffsets request for the
	// start offsets of all their topics, one for the end offsets and one
	// OffsetFetch for all their groups (default DefaultBatchWindow;
	// negative sends each measurement's own requests).
	BatchWindow time.Duration
	// Dial, when set, opens every TCP connection (the egress policy's
	// dialer for user-configured addresses); nil dials directly.
	Dial brokerconn.DialFunc
}

// Validate reports every invalid field, each message naming it.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("kafka config: "+format, args...))
	}
	if len(c.Brokers) == 0 {
		add("brokers must list at least one host:port")
	}
	for i, b := range c.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			add("brokers[%d] %q is not host:port", i, b)
		}
	}
	switch c.SASLMechanism {
	case "":
		if c.Username != "" || c.Password != "" {
			add("username/password are set but saslMechanism is empty; use %s, %s or %s", SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512)
		}
	case SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512:
		if c.Username == "" || c.Password == "" {
			add("saslMechanism %s needs username and password", c.SASLMechanism)
		}
	default:
		add("saslMechanism %q is not one of %s, %s, %s", c.SASLMechanism, SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512)
	}
	if c.DialTimeout < 0 {
		add("dialTimeout %s is negative", c.DialTimeout)
	}
	if err := c.TLS.Validate("tls"); err != nil {
		add("%v", err)
	}
	return errors.Join(errs...)
}

func (c Config) mechanism() sasl.Mechanism {
	user, pw := c.Username, c.Password.Reveal()
	switch c.SASLMechanism {
	case SASLPlain:
		return plain.Auth{User: user, Pass: pw}.AsMechanism()
	case SASLSCRAMSHA256:
		return scram.Auth{User: user, Pass: pw}.AsSha256Mechanism()
	case SASLSCRAMSHA512:
		return scram.Auth{User: user, Pass: pw}.AsSha512Mechanism()
	}
	return nil
}

func (c Config) options() ([]kgo.Opt, error) {
	timeout := c.DialTimeout
	if timeout == 0 {
		timeout = defaultDialTimeout
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.DialTimeout(timeout),
		kgo.ClientID("swell"),
		// Fail a Measure quickly on a dead cluster instead of retrying
		// until the caller's deadline: the next poll is the retry.
		kgo.RequestRetries(1),
		kgo.RetryTimeout(timeout),
	}
	if m := c.mechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	tlsCfg, err := c.TLS.Config("")
	if err != nil {
		return nil, fmt.Errorf("kafka config: tls: %w", err)
	}
	switch {
	case c.Dial != nil:
		// kgo takes a custom dialer or its own TLS, not both: the dialer
		// then runs the handshake, naming each broker it dials.
		opts = append(opts, kgo.Dialer(brokerconn.WithTLS(c.Dial, tlsCfg)))
	case tlsCfg != nil:
		// kgo sets ServerName per broker when the config leaves it empty.
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	return opts, nil
}

// Client is the shared connection to one Kafka cluster. Safe for
// concurrent use.
type Client struct {
	cfg   Config
	cl    *kgo.Client
	adm   *kadm.Client
	batch *offsetBatcher
}

// Batches is the number of offset request rounds (three requests each,
// sent together) the Client's measurements made, for metrics and tests.
func (c *Client) Batches() int64 { return c.batch.batches.Load() }

// New validates cfg, creates the client and checks a broker answers.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("kafka ping %s: %w", strings.Join(cfg.Brokers, ","), err)
	}
	adm := kadm.NewClient(cl)
	window := cfg.BatchWindow
	if window == 0 {
		window = DefaultBatchWindow
	}
	return &Client{cfg: cfg, cl: cl, adm: adm, batch: &offsetBatcher{adm: adm, window: window}}, nil
}

// Close closes the client; sources made from it stop working.
func (c *Client) Close() error {
	c.cl.Close()
	return nil
}

// QueueRef names a topic and the consumer group whose lag on it is the
// backlog. An empty Group means the Config's ConsumerGroup.
type QueueRef struct {
	Topic string
	Group string
}

// Queue returns the source measuring one group's lag on one topic.
func (c *Client) Queue(ref QueueRef) (source.Source, error) {
	if ref.Group == "" {
		ref.Group = c.cfg.ConsumerGroup
	}
	switch {
	case ref.Topic == "":
		return nil, errors.New("kafka queue: topic is required")
	case ref.Group == "":
		return nil, fmt.Errorf("kafka queue %q: no consumer group (name one, or set the config's consumerGroup)", ref.Topic)
	}
	return &lagSource{c: c, ref: ref}, nil
}

// lagSource measures one group's lag on one topic.
type lagSource struct {
	c   *Client
	ref QueueRef
}

var _ source.Source = (*lagSource)(nil)

func (s *lagSource) what() string {
	return fmt.Sprintf("kafka group %q on topic %q", s.ref.Group, s.ref.Topic)
}

// offsets is what one measurement reads, asked concurrently.
type offsets struct {
	start, end kadm.ListedOffsets
	committed  kadm.OffsetResponses
}

func (s *lagSource) fetch(ctx context.Context) (offsets, error) {
	o, errs := s.c.batch.fetch(ctx, s.ref)
	e1, e2, e3 := errs[0], errs[1], errs[2]
	if groupNeverCommitted(e3) {
		o.committed, e3 = nil, nil
	}
	switch {
	case e1 != nil:
		return o, fmt.Errorf("%s: list start offsets: %w", s.what(), e1)
	case e2 != nil:
		return o, fmt.Errorf("%s: list end offsets: %w", s.what(), e2)
	case e3 != nil:
		return o, fmt.Errorf("%s: fetch committed offsets: %w", s.what(), e3)
	}
	if err := o.start.Error(); err != nil {
		return o, fmt.Errorf("%s: list start offsets: %w", s.what(), err)
	}
	if err := o.end.Error(); err != nil {
		return o, fmt.Errorf("%s: list end offsets: %w", s.what(), err)
	}
	if len(o.end[s.ref.Topic]) == 0 {
		return o, fmt.Errorf("%s: topic has no partitions (does it exist?)", s.what())
	}
	return o, nil
}

// Measure sums the lag of every partition of the topic (see the package
// doc for the rule) and, where there is lag, reads the timestamp of the
// first unconsumed record of each such partition for OldestAge.
func (s *lagSource) Measure(ctx context.Context) (source.Sample, error) {
	now := time.Now()
	o, err := s.fetch(ctx)
	if err != nil {
		return source.Sample{}, err
	}
	var total int64
	from := map[int32]int64{}
	for p, end := range o.end[s.ref.Topic] {
		start, ok := o.start[s.ref.Topic][p]
		if !ok {
			return source.Sample{}, fmt.Errorf("%s: no start offset for partition %d", s.what(), p)
		}
		committed := int64(-1)
		if r, ok := o.committed.Lookup(s.ref.Topic, p); ok {
			if r.Err != nil {
				return source.Sample{}, fmt.Errorf("%s: committed offset of partition %d: %w", s.what(), p, r.Err)
			}
			committed = r.At
		}
		lag := partitionLag(start.Offset, end.Offset, committed)
		if lag > 0 {
			from[p] = max(committed, start.Offset)
		}
		total += lag
	}
	age := source.AgeAt(time.Now(), OldestRecord(ctx, s.c.cl, s.ref.Topic, from))
	return source.Sample{Backlog: total, Ready: total, Time: now, OldestAge: age}, nil
}

// partitionLag applies the package's lag rule; committed < 0 means no
// commit.
func partitionLag(start, end, committed int64) int64 {
	from := max(committed, start)
	return max(end-from, 0)
}

// Close releases nothing: the client belongs to the Client.
func (s *lagSource) Close() error { return nil }
