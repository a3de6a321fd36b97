// Package nats measures NATS JetStream consumers: the messages a durable
// consumer has not yet delivered (NumPending) plus those delivered and not
// acknowledged (NumAckPending). One Client holds one NATS connection per
// configuration, shared by every consumer measured through it; the NATS
// client reconnects by itself.
//
// Batching: the consumers of one stream measured within a short window
// (Config.BatchWindow) share one listing of the stream's consumers, up to
// 256 per request, instead of asking for their infos one by one; a
// consumer alone in its window asks for itself.
//
// Push: Watch runs an ordered, headers-only JetStream consumer on the
// watched consumer's subjects, delivering only messages published after it
// starts. Every new message wakes the loop. This was chosen over JetStream
// advisories, which report consumer events (max deliveries, terminated
// messages) but never a newly stored message, and over a plain subscription
// on the stream's subjects, which would copy every message body to the
// controller and miss messages stored through a different subject mapping.
package nats

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
)

const defaultDialTimeout = 5 * time.Second

// Config says how to reach one NATS system (a ScalerConfig of type nats).
// Credentials are values: the controller resolves Secrets before New.
type Config struct {
	// URL is one or more server URLs separated by commas
	// (nats://host:4222, tls://host:4222), without credentials (required).
	URL string
	// Username and Password authenticate; both or neither.
	Username string
	Password brokerconn.Secret
	// TLS options; a tls:// URL needs them enabled.
	TLS brokerconn.TLS
	// Stream is the default JetStream stream for QueueRefs that name only
	// a consumer.
	Stream string
	// DialTimeout bounds connecting and each JetStream request that has no
	// deadline of its own (default 5s).
	DialTimeout time.Duration
	// BatchWindow is how long a measurement waits for measurements of
	// other consumers of the same stream to share its request: the
	// consumers measured within the window are read from one listing of
	// the stream's consumers (default DefaultBatchWindow; negative asks
	// for each consumer alone).
	BatchWindow time.Duration
	// Dial, when set, opens every TCP connection (the egress policy's
	// dialer for user-configured addresses); nil dials directly.
	Dial brokerconn.DialFunc
}

// Validate reports every invalid field, each message naming it, never
// repeating a URL.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("nats config: "+format, args...))
	}
	if c.URL == "" {
		add("url is required")
	}
	for i, raw := range strings.Split(c.URL, ",") {
		if c.URL == "" {
			break
		}
		if err := checkURL(strings.TrimSpace(raw)); err != nil {
			add("url (entry %d): %v", i+1, err)
		}
	}
	if (c.Username == "") != (c.Password == "") {
		add("username and password must be set together")
	}
	if strings.ContainsAny(c.Stream, " .*>") {
		add("stream %q must not contain spaces, '.', '*' or '>'", c.Stream)
	}
	if c.DialTimeout < 0 {
		add("dialTimeout %s is negative", c.DialTimeout)
	}
	if err := c.TLS.Validate("tls"); err != nil {
		add("%v", err)
	}
	return errors.Join(errs...)
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if u.User != nil {
		return errors.New("must not contain credentials; use the username and password fields")
	}
	if u.Scheme != "nats" && u.Scheme != "tls" {
		return fmt.Errorf("scheme %q is not nats or tls", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("has no host")
	}
	return nil
}

func (c Config) timeout() time.Duration {
	if c.DialTimeout == 0 {
		return defaultDialTimeout
	}
	return c.DialTimeout
}

func (c Config) options() ([]natsgo.Option, error) {
	opts := []natsgo.Option{
		natsgo.Name("swell"),
		natsgo.Timeout(c.timeout()),
		natsgo.MaxReconnects(-1),
		// Errors are reported by Measure and Watch; the default handler
		// would print to stderr.
		natsgo.ErrorHandler(func(*natsgo.Conn, *natsgo.Subscription, error) {}),
	}
	if c.Username != "" {
		opts = append(opts, natsgo.UserInfo(c.Username, c.Password.Reveal()))
	}
	if c.Dial != nil {
		opts = append(opts, natsgo.SetCustomDialer(natsDialer{dial: c.Dial, timeout: c.timeout()}))
	}
	tlsCfg, err := c.TLS.Config("")
	if err != nil {
		return nil, fmt.Errorf("nats config: tls: %w", err)
	}
	if tlsCfg != nil {
		// An empty ServerName lets the client check each server's host.
		opts = append(opts, natsgo.Secure(tlsCfg))
	}
	return opts, nil
}

// Client is the shared connection to one NATS system. Safe for concurrent
// use.
type Client struct {
	cfg      Config
	nc       *natsgo.Conn
	js       jetstream.JetStream
	batch    *infoBatcher
	requests *requestCounter
}

// New validates cfg, connects and checks JetStream answers.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	nc, err := natsgo.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", cfg.URL, err)
	}
	requests := &requestCounter{}
	js, err := jetstream.New(nc,
		jetstream.WithDefaultTimeout(cfg.timeout()),
		jetstream.WithClientTrace(&jetstream.ClientTrace{RequestSent: requests.sent}))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats jetstream: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats jetstream account info: %w", err)
	}
	batch := newInfoBatcher(js, cfg.BatchWindow, cfg.timeout())
	return &Client{cfg: cfg, nc: nc, js: js, batch: batch, requests: requests}, nil
}

// Requests is the number of JetStream API requests the Client has made,
// by kind, for metrics, tests and benchmarks.
func (c *Client) Requests() Requests {
	return c.requests.snapshot()
}

// Close closes the connection; sources made from it stop working.
func (c *Client) Close() error {
	c.nc.Close()
	return nil
}

// QueueRef names a durable JetStream consumer. An empty Stream means the
// Config's Stream.
type QueueRef struct {
	Stream   string
	Consumer string
}

// ParseQueueRef reads the queue string of a QWorker: "<stream>/<consumer>"
// or "<consumer>" (of the Config's stream).
func ParseQueueRef(s string) (QueueRef, error) {
	stream, consumer, found := strings.Cut(s, "/")
	if !found {
		stream, consumer = "", s
	}
	ref := QueueRef{Stream: stream, Consumer: consumer}
	if found && stream == "" {
		return ref, fmt.Errorf("nats queue %q: stream before '/' is empty", s)
	}
	if consumer == "" {
		return ref, fmt.Errorf("nats queue %q: consumer is empty", s)
	}
	return ref, nil
}

// Queue returns the source measuring one consumer. The source also
// implements source.Pusher.
func (c *Client) Queue(ref QueueRef) (source.Source, error) {
	if ref.Stream == "" {
		ref.Stream = c.cfg.Stream
	}
	switch {
	case ref.Stream == "":
		return nil, fmt.Errorf("nats queue %q: no stream (name one, or set the config's stream)", ref.Consumer)
	case ref.Consumer == "":
		return nil, errors.New("nats queue: consumer is required")
	}
	return &consumerSource{c: c, ref: ref}, nil
}

// consumerSource measures one consumer of a shared Client.
type consumerSource struct {
	c   *Client
	ref QueueRef

	mu sync.Mutex
	st jetstream.Stream // cached by stream()
}

var (
	_ source.Source = (*consumerSource)(nil)
	_ source.Pusher = (*consumerSource)(nil)
)

func (s *consumerSource) what() string {
	return fmt.Sprintf("nats consumer %q of stream %q", s.ref.Consumer, s.ref.Stream)
}

// info asks the server for the consumer's state. While the connection is
// down it fails at once rather than waiting for a reconnection.
func (s *consumerSource) info(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	if err := s.connected(); err != nil {
		return nil, err
	}
	info, err := s.c.batch.direct(ctx, s.ref)
	if err != nil {
		return nil, fmt.Errorf("%s: info: %w", s.what(), err)
	}
	return info, nil
}

// batchedInfo is the consumer's state through the Client's batcher, which
// reads the consumers of one stream measured together from one listing.
// While the connection is down it fails at once, as info does.
func (s *consumerSource) batchedInfo(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	if err := s.connected(); err != nil {
		return nil, err
	}
	info, err := s.c.batch.info(ctx, s.ref)
	if err != nil {
		return nil, fmt.Errorf("%s: info: %w", s.what(), err)
	}
	return info, nil
}

func (s *consumerSource) connected() error {
	if st := s.c.nc.Status(); st != natsgo.CONNECTED {
		return fmt.Errorf("%s: connection is %s", s.what(), st)
	}
	return nil
}

// Measure reads NumPending (ready) and NumAckPending (in flight).
func (s *consumerSource) Measure(ctx context.Context) (source.Sample, error) {
	now := time.Now()
	info, err := s.batchedInfo(ctx)
	if err != nil {
		return source.Sample{}, err
	}
	ready, inFlight := int64(info.NumPending), int64(info.NumAckPending)
	sample := source.Sample{Backlog: ready + inFlight, Ready: ready, InFlight: inFlight, Time: now}
	if ready > 0 {
		sample.OldestAge = source.AgeAt(time.Now(), s.firstWaiting(ctx, info))
	}
	return sample, nil
}

// firstWaiting is the stored time of the consumer's first undelivered
// message: the first one after its last delivered stream sequence on any
// of its filter subjects (STREAM.MSG.GET next_by_subj, one request per
// filter subject). It is a correction, so any failure (an account without
// access to STREAM.MSG.GET, a message removed meanwhile) gives the zero
// time: age unknown, the backlog still counts.
func (s *consumerSource) firstWaiting(ctx context.Context, info *jetstream.ConsumerInfo) time.Time {
	stream, err := s.stream(ctx)
	if err != nil {
		return time.Time{}
	}
	subjects := filterSubjects(info.Config)
	if len(subjects) == 0 {
		subjects = []string{">"}
	}
	var first *jetstream.RawStreamMsg
	for _, subj := range subjects {
		m, err := stream.GetMsg(ctx, info.Delivered.Stream+1, jetstream.WithGetMsgSubject(subj))
		if err != nil {
			if !errors.Is(err, jetstream.ErrMsgNotFound) {
				s.forgetStream()
			}
			continue
		}
		if first == nil || m.Sequence < first.Sequence {
			first = m
		}
	}
	if first == nil {
		return time.Time{}
	}
	return first.Time
}

// stream is the consumer's stream handle, looked up once (a stream info
// request) and kept until a message lookup fails.
func (s *consumerSource) stream(ctx context.Context) (jetstream.Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st != nil {
		return s.st, nil
	}
	st, err := s.c.js.Stream(ctx, s.ref.Stream)
	if err != nil {
		return nil, fmt.Errorf("%s: stream: %w", s.what(), err)
	}
	s.st = st
	return st, nil
}

func (s *consumerSource) forgetStream() {
	s.mu.Lock()
	s.st = nil
	s.mu.Unlock()
}

// Close releases nothing: the connection belongs to the Client.
func (s *consumerSource) Close() error { return nil }

// Watch wakes the loop on every message stored in the consumer's stream
// under the consumer's filter subjects, through an ordered headers-only
// consumer that starts at new messages. It wakes once when in place. Acks
// publish nothing it sees, so consumption shows at the next poll.
//
// Watch returns nil when ctx ends and an error when the consumer cannot be
// found or the ordered consumer stops.
func (s *consumerSource) Watch(ctx context.Context, wake chan<- struct{}) error {
	info, err := s.info(ctx)
	if err != nil {
		return err
	}
	stream, err := s.c.js.Stream(ctx, s.ref.Stream)
	if err != nil {
		return fmt.Errorf("%s: watch: %w", s.what(), err)
	}
	oc, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: filterSubjects(info.Config),
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		HeadersOnly:    true,
	})
	if err != nil {
		return fmt.Errorf("%s: watch: ordered consumer: %w", s.what(), err)
	}
	notify := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	cc, err := oc.Consume(func(jetstream.Msg) { notify() })
	if err != nil {
		return fmt.Errorf("%s: watch: consume: %w", s.what(), err)
	}
	defer cc.Stop()
	notify()
	select {
	case <-ctx.Done():
		return nil
	case <-cc.Closed():
		return fmt.Errorf("%s: watch: ordered consumer stopped", s.what())
	}
}

// filterSubjects is what the watched consumer reads; nil means the whole
// stream.
func filterSubjects(cfg jetstream.ConsumerConfig) []string {
	if len(cfg.FilterSubjects) > 0 {
		return cfg.FilterSubjects
	}
	if cfg.FilterSubject != "" {
		return []string{cfg.FilterSubject}
	}
	return nil
}

// natsDialer adapts a DialFunc to nats.go's CustomDialer (nats runs TLS
// itself over what it returns).
type natsDialer struct {
	dial    brokerconn.DialFunc
	timeout time.Duration
}

func (d natsDialer) Dial(network, address string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	return d.dial(ctx, network, address)
}
