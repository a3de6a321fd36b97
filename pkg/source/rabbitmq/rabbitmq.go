// Package rabbitmq measures RabbitMQ queues. Ready messages come from a
// passive queue.declare over AMQP (live and exact); unacknowledged messages
// are known only to the management HTTP API, so with a management URL the
// sample includes them (sampled by RabbitMQ every collect_statistics_interval,
// 5 s by default) and without one InFlight is reported as 0: unknown, and the
// backlog is the ready count alone, as in QScaler.
//
// One Client holds one AMQP connection per configuration, shared by every
// queue measured through it, and dials again when the connection closed.
package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
)

// Default ports, used when Config.Port is 0.
const (
	DefaultPort    = 5672
	DefaultTLSPort = 5671
)

const defaultDialTimeout = 5 * time.Second

// Config says how to reach one RabbitMQ (a ScalerConfig of type rabbitmq).
// Credentials are values: the controller resolves Secrets before New, and
// they travel in the SASL handshake and the Authorization header only, never
// in a URL.
type Config struct {
	// URL is amqp://host[:port] or amqps://host[:port], without
	// credentials or vhost. Set URL or Host, not both.
	URL string
	// Host and Port are the alternative to URL (Port defaults to 5672, or
	// 5671 with TLS).
	Host string
	Port int
	// Username and Password authenticate (PLAIN). Empty Username means
	// RabbitMQ's default guest/guest.
	Username string
	Password brokerconn.Secret
	// VHost is the virtual host (default "/").
	VHost string
	// TLS options; amqps:// in URL also turns TLS on.
	TLS brokerconn.TLS
	// ManagementURL (http[s]://host:15672) lets samples count unacknowledged
	// messages. Optional: without it InFlight is 0 (unknown).
	ManagementURL string
	// ManagementUsername and ManagementPassword default to Username and
	// Password.
	ManagementUsername string
	ManagementPassword brokerconn.Secret
	// DialTimeout bounds connecting and each management request (default 5s).
	DialTimeout time.Duration
	// BatchWindow is how long a measurement waits for measurements of
	// other queues of the same Client to share its management request:
	// the queues measured within the window are read with one request
	// listing the vhost's queues (default DefaultBatchWindow; negative asks
	// for each queue alone). The ready count still comes over AMQP, per
	// queue.
	BatchWindow time.Duration
	// Dial, when set, opens every TCP connection (the egress policy's
	// dialer for user-configured addresses); nil dials directly.
	Dial brokerconn.DialFunc
}

// Validate reports every invalid field, each message naming it. It never
// repeats a URL, which might hold credentials.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("rabbitmq config: "+format, args...))
	}
	switch {
	case c.URL == "" && c.Host == "":
		add("set url or host")
	case c.URL != "" && c.Host != "":
		add("set url or host, not both")
	case c.URL != "":
		if err := checkURL(c.URL, "amqp", "amqps"); err != nil {
			add("url: %v", err)
		}
		if c.Port != 0 {
			add("port goes into url when url is set")
		}
	}
	if c.Port < 0 || c.Port > 65535 {
		add("port %d is out of range; use 1..65535", c.Port)
	}
	if c.ManagementURL != "" {
		if err := checkURL(c.ManagementURL, "http", "https"); err != nil {
			add("managementURL: %v", err)
		}
	}
	if c.DialTimeout < 0 {
		add("dialTimeout %s is negative", c.DialTimeout)
	}
	if err := c.TLS.Validate("tls"); err != nil {
		add("%v", err)
	}
	return errors.Join(errs...)
}

// checkURL accepts only the given schemes, a host, and no credentials.
func checkURL(raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole URL
		}
		return fmt.Errorf("not a valid URL: %w", err)
	}
	if u.User != nil {
		return errors.New("must not contain credentials; use the username and password fields")
	}
	ok := false
	for _, s := range schemes {
		ok = ok || u.Scheme == s
	}
	if !ok {
		return fmt.Errorf("scheme %q is not one of %v", u.Scheme, schemes)
	}
	if u.Host == "" {
		return errors.New("has no host")
	}
	return nil
}

func (c Config) vhost() string {
	if c.VHost == "" {
		return "/"
	}
	return c.VHost
}

func (c Config) timeout() time.Duration {
	if c.DialTimeout == 0 {
		return defaultDialTimeout
	}
	return c.DialTimeout
}

// amqpURL is the URL to dial, without credentials or vhost.
func (c Config) amqpURL() (string, error) {
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil {
			return "", errors.New("rabbitmq config: url: not a valid URL")
		}
		u.Path = ""
		return u.String(), nil
	}
	scheme, port := "amqp", DefaultPort
	if c.TLS.Enabled {
		scheme, port = "amqps", DefaultTLSPort
	}
	if c.Port != 0 {
		port = c.Port
	}
	return scheme + "://" + net.JoinHostPort(c.Host, strconv.Itoa(port)), nil
}

func (c Config) amqpConfig(host string) (amqp.Config, error) {
	tlsCfg, err := c.TLS.Config(host)
	if err != nil {
		return amqp.Config{}, fmt.Errorf("rabbitmq config: tls: %w", err)
	}
	cfg := amqp.Config{
		Vhost:           c.vhost(),
		TLSClientConfig: tlsCfg,
		Dial:            c.amqpDial(),
		Properties:      amqp.Table{"connection_name": "swell"},
	}
	if c.Username != "" {
		cfg.SASL = []amqp.Authentication{&amqp.PlainAuth{Username: c.Username, Password: c.Password.Reveal()}}
	}
	return cfg, nil
}

// Client is the shared connection to one RabbitMQ. Safe for concurrent use.
type Client struct {
	cfg     Config
	url     string
	amqpCfg amqp.Config
	mgmt    *management
	stats   *statsBatcher

	mu     sync.Mutex
	conn   *amqp.Connection
	closed bool
}

// New validates cfg and connects.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, err := cfg.amqpURL()
	if err != nil {
		return nil, err
	}
	pu, _ := url.Parse(u)
	amqpCfg, err := cfg.amqpConfig(pu.Hostname())
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, url: u, amqpCfg: amqpCfg}
	if cfg.ManagementURL != "" {
		if c.mgmt, err = newManagement(cfg); err != nil {
			return nil, err
		}
		window := cfg.BatchWindow
		if window == 0 {
			window = DefaultBatchWindow
		}
		c.stats = &statsBatcher{m: c.mgmt, vhost: cfg.vhost(), window: window, timeout: cfg.timeout()}
	}
	if _, err := c.connection(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// ManagementRequests is the number of management API requests the
// Client's measurements made, for metrics, tests and benchmarks.
func (c *Client) ManagementRequests() int64 {
	if c.stats == nil {
		return 0
	}
	return c.stats.requests.Load()
}

// connection returns the open connection, dialling again when the last
// one closed (broker restart, network failure).
func (c *Client) connection(ctx context.Context) (*amqp.Connection, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("rabbitmq: client closed")
	}
	if c.conn != nil && !c.conn.IsClosed() {
		return c.conn, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("rabbitmq connect %s: %w", c.url, err)
	}
	conn, err := amqp.DialConfig(c.url, c.amqpCfg)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq connect %s: %w", c.url, err)
	}
	c.conn = conn
	return conn, nil
}

// Close closes the connection; sources made from it stop working.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.conn == nil || c.conn.IsClosed() {
		return nil
	}
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("rabbitmq close: %w", err)
	}
	return nil
}

// Queue returns the source measuring the named queue of the configured
// vhost.
func (c *Client) Queue(name string) (source.Source, error) {
	if name == "" {
		return nil, errors.New("rabbitmq queue: name is required")
	}
	return &queueSource{c: c, name: name}, nil
}

// queueSource measures one queue of a shared Client.
type queueSource struct {
	c    *Client
	name string
}

var _ source.Source = (*queueSource)(nil)

// Measure reads the ready count over AMQP and, with a management URL, the
// unacknowledged count over HTTP and the head message's timestamp property
// for OldestAge. AMQP offers no look at a message without taking it (a
// basic.get and requeue marks it redelivered), so without a management
// URL, for quorum queues and for messages published without a timestamp
// the age is unknown. The management figures are as old as RabbitMQ's
// statistics collection (5 s by default), so the head may have been taken
// since; the age then reads high by at most that interval.
func (s *queueSource) Measure(ctx context.Context) (source.Sample, error) {
	now := time.Now()
	ready, err := s.ready(ctx)
	if err != nil {
		return source.Sample{}, err
	}
	var f queueFigures
	if s.c.mgmt != nil {
		if f, err = s.c.stats.stats(ctx, s.name); err != nil {
			return source.Sample{}, err
		}
	}
	sample := source.Sample{Backlog: ready + f.Unacked, Ready: ready, InFlight: f.Unacked, Time: now}
	if ready > 0 {
		sample.OldestAge = source.AgeAt(now, f.Head)
	}
	return sample, nil
}

// ready declares the queue passively on a short-lived channel (a failed
// passive declare closes its channel, so channels are not reused). AMQP
// calls take no context, so the call runs aside and ctx bounds the wait.
func (s *queueSource) ready(ctx context.Context) (int64, error) {
	conn, err := s.c.connection(ctx)
	if err != nil {
		return 0, fmt.Errorf("rabbitmq queue %q: %w", s.name, err)
	}
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := declarePassive(conn, s.name)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return 0, fmt.Errorf("rabbitmq queue.declare passive %q: %w", s.name, r.err)
		}
		return r.n, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("rabbitmq queue.declare passive %q: %w", s.name, ctx.Err())
	}
}

func declarePassive(conn *amqp.Connection, name string) (int64, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	defer func() { _ = ch.Close() }()
	q, err := ch.QueueDeclarePassive(name, false, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	return int64(q.Messages), nil
}

// Close releases nothing: the connection belongs to the Client.
func (s *queueSource) Close() error { return nil }

// amqpDial is amqp's default dial, or Dial bounded by the dial timeout
// (amqp runs the TLS handshake itself over what it returns).
func (c Config) amqpDial() func(network, addr string) (net.Conn, error) {
	if c.Dial == nil {
		return amqp.DefaultDial(c.timeout())
	}
	return func(network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout())
		defer cancel()
		return c.Dial(ctx, network, addr)
	}
}
