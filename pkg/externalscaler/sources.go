package externalscaler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
	"github.com/swell-autoscaler/swell/pkg/source/burrow"
	"github.com/swell-autoscaler/swell/pkg/source/nats"
	"github.com/swell-autoscaler/swell/pkg/source/rabbitmq"
	"github.com/swell-autoscaler/swell/pkg/source/redis"
)

// sourceProbe adapts a Swell source.Source (Redis, RabbitMQ, NATS,
// Burrow): its Backlog is the "backlog" value.
type sourceProbe struct {
	src   source.Source
	close func() error
	// growth makes the wait target's fields (waittarget.go).
	growth growth
}

func (p *sourceProbe) measure(ctx context.Context, now time.Time) (Reading, error) {
	s, err := p.src.Measure(ctx)
	if err != nil {
		return Reading{}, err
	}
	vals := map[string]float64{
		"backlog": float64(s.Backlog), "ready": float64(s.Ready), "inFlight": float64(s.InFlight),
	}
	p.growth.add(now, s, vals)
	return Reading{At: now, Values: vals}, nil
}

// watch forwards push notifications of sources that can push.
func (p *sourceProbe) watch(ctx context.Context, wake chan<- struct{}) error {
	ps, ok := p.src.(source.Pusher)
	if !ok {
		<-ctx.Done()
		return nil
	}
	return ps.Watch(ctx, wake)
}

func (p *sourceProbe) Close() error {
	return errors.Join(p.src.Close(), p.close())
}

// funcTarget is a target whose open is a closure over decoded config.
type funcTarget func(ctx context.Context) (probe, error)

func (t funcTarget) open(ctx context.Context, _ *sharedConns) (probe, error) { return t(ctx) }

// brokerTarget measures one queue through a broker client shared with
// every target of the same connection fingerprint fp (see sharedConns);
// the probe releases it, and the last release closes it.
type brokerTarget[C io.Closer] struct {
	fp    string
	dial  func(context.Context) (C, error)
	queue func(C) (source.Source, error)
}

func (t brokerTarget[C]) open(ctx context.Context, conns *sharedConns) (probe, error) {
	dial := func(ctx context.Context) (io.Closer, error) {
		c, err := t.dial(ctx)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return c, nil
	}
	if conns == nil {
		conns = newSharedConns()
	}
	cl, release, err := conns.acquire(ctx, t.fp, dial)
	if err != nil {
		return nil, err
	}
	src, err := t.queue(cl.(C))
	if err != nil {
		return nil, errors.Join(err, release())
	}
	return &sourceProbe{src: src, close: release}, nil
}

// tlsFingerprint is the part of a connection fingerprint the TLS options
// make.
func tlsFingerprint(t brokerconn.TLS) string {
	return fmt.Sprintf("%t|%s|%t|%s|%s|%s", t.Enabled, t.ServerName, t.InsecureSkipVerify, t.CAPEM, t.CertPEM, t.KeyPEM.Reveal())
}

// tlsFrom decodes the "tls" key (enable|disable) and an optional CA.
func tlsFrom(f *fields) brokerconn.TLS {
	v := f.str("disable", "tls")
	if v != "enable" && v != "disable" {
		f.fail("metadata \"tls\": %q is not enable or disable", v)
	}
	t := brokerconn.TLS{Enabled: v == "enable"}
	if ca := f.secret("ca"); ca != "" {
		t.CAPEM = []byte(ca.Reveal())
	}
	return t
}

// parseRedis: a list (listName) or a stream group (stream +
// consumerGroup), through pkg/source/redis.
func parseRedis(p *Parser, f *fields) (*Spec, error) {
	cfg := redis.Config{
		Username: f.str("", "username"),
		Password: f.secret("password"),
		DB:       f.integer(0, "databaseIndex", "db"),
		TLS:      tlsFrom(f),
		Dial:     p.dial(),
	}
	if addr := f.str("", "address"); addr != "" {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			f.fail("metadata \"address\": %q is not host:port", addr)
		}
		cfg.Host = host
		cfg.Port, _ = strconv.Atoi(port)
	} else {
		cfg.Host = f.required("the Redis host (or set \"address\" host:port)", "host")
		cfg.Port = f.integer(6379, "port")
	}
	ref := redis.QueueRef{Key: f.str("", "listName", "stream"), Group: f.str("", "consumerGroup")}
	if ref.Key == "" {
		f.fail("metadata \"listName\" (a list) or \"stream\" (with \"consumerGroup\") is required")
	}
	if err := cfg.Validate(); err != nil {
		f.fail("metadata (redis connection): %v", err)
	}
	m, act := backlogMetric(f, "redis-"+ref.Key+groupSuffix(ref.Group), 5, "listLength", "pendingEntriesCount")
	port := cfg.Port
	if port == 0 {
		port = redis.DefaultPort
	}
	spec := &Spec{
		dests:  []string{net.JoinHostPort(cfg.Host, strconv.Itoa(port))},
		Source: "redis", Metrics: []MetricDef{m}, Activation: act,
		Key: fmt.Sprintf("redis host=%s port=%d db=%d user=%s tls=%t key=%s group=%s", cfg.Host, cfg.Port, cfg.DB, cfg.Username, cfg.TLS.Enabled, ref.Key, ref.Group),
		target: brokerTarget[*redis.Client]{
			fp:    connFingerprint("redis", cfg.Host, strconv.Itoa(port), strconv.Itoa(cfg.DB), cfg.Username, cfg.Password.Reveal(), tlsFingerprint(cfg.TLS)),
			dial:  func(ctx context.Context) (*redis.Client, error) { return redis.New(ctx, cfg) },
			queue: func(c *redis.Client) (source.Source, error) { return c.Queue(ref) },
		},
	}
	queueWait(f, spec, "redis-wait-"+ref.Key+groupSuffix(ref.Group))
	return spec, nil
}

func groupSuffix(g string) string {
	if g == "" {
		return ""
	}
	return "-" + g
}

// parseRabbitMQ: a queue's ready (and, with managementURL, unacked)
// messages, through pkg/source/rabbitmq.
func parseRabbitMQ(p *Parser, f *fields) (*Spec, error) {
	cfg := rabbitmq.Config{
		URL:           f.str("", "url"),
		Host:          f.str("", "host"),
		Port:          f.integer(0, "port"),
		Username:      f.str("", "username"),
		Password:      f.secret("password"),
		VHost:         f.str("", "vhost", "vhostName"),
		TLS:           tlsFrom(f),
		ManagementURL: f.str("", "managementURL"),
		Dial:          p.dial(),
	}
	queue := f.required("the queue to measure", "queueName")
	if err := cfg.Validate(); err != nil {
		f.fail("metadata (rabbitmq connection): %v", err)
	}
	m, act := backlogMetric(f, "rabbitmq-"+queue, 20, "queueLength", "value")
	spec := &Spec{
		dests:  rabbitDests(cfg),
		Source: "rabbitmq", Metrics: []MetricDef{m}, Activation: act,
		Key: fmt.Sprintf("rabbitmq url=%s host=%s port=%d vhost=%s user=%s tls=%t mgmt=%s queue=%s", cfg.URL, cfg.Host, cfg.Port, cfg.VHost, cfg.Username, cfg.TLS.Enabled, cfg.ManagementURL, queue),
		target: brokerTarget[*rabbitmq.Client]{
			fp: connFingerprint("rabbitmq", cfg.URL, cfg.Host, strconv.Itoa(cfg.Port), cfg.VHost, cfg.Username, cfg.Password.Reveal(),
				cfg.ManagementURL, tlsFingerprint(cfg.TLS)),
			dial:  func(ctx context.Context) (*rabbitmq.Client, error) { return rabbitmq.New(ctx, cfg) },
			queue: func(c *rabbitmq.Client) (source.Source, error) { return c.Queue(queue) },
		},
	}
	queueWait(f, spec, "rabbitmq-wait-"+queue)
	return spec, nil
}

// parseNATS: a durable JetStream consumer's pending plus ack-pending
// messages, through pkg/source/nats.
func parseNATS(p *Parser, f *fields) (*Spec, error) {
	cfg := nats.Config{
		URL:      f.required("nats://host:4222", "natsURL", "url"),
		Username: f.str("", "username"),
		Password: f.secret("password"),
		TLS:      tlsFrom(f),
		Dial:     p.dial(),
	}
	ref := nats.QueueRef{
		Stream:   f.required("the JetStream stream", "stream"),
		Consumer: f.required("the durable consumer", "consumer"),
	}
	if err := cfg.Validate(); err != nil {
		f.fail("metadata (nats connection): %v", err)
	}
	m, act := backlogMetric(f, "nats-"+ref.Stream+"-"+ref.Consumer, 10, "lagThreshold")
	var dests []string
	for _, u := range strings.Split(cfg.URL, ",") {
		if u = strings.TrimSpace(u); !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		dests = append(dests, urlDest(u, natsPorts))
	}
	spec := &Spec{
		dests:  dests,
		Source: "nats", Metrics: []MetricDef{m}, Activation: act,
		Key: fmt.Sprintf("nats url=%s user=%s tls=%t stream=%s consumer=%s", cfg.URL, cfg.Username, cfg.TLS.Enabled, ref.Stream, ref.Consumer),
		target: brokerTarget[*nats.Client]{
			fp:    connFingerprint("nats", cfg.URL, cfg.Username, cfg.Password.Reveal(), tlsFingerprint(cfg.TLS)),
			dial:  func(ctx context.Context) (*nats.Client, error) { return nats.New(ctx, cfg) },
			queue: func(c *nats.Client) (source.Source, error) { return c.Queue(ref) },
		},
	}
	queueWait(f, spec, "nats-wait-"+ref.Stream+"-"+ref.Consumer)
	return spec, nil
}

// parseBurrow: a consumer group's total lag as Burrow evaluates it,
// through pkg/source/burrow.
func parseBurrow(p *Parser, f *fields) (*Spec, error) {
	cfg := burrow.Config{
		URL:      f.required("Burrow's HTTP base, http://burrow:8000", "burrowURL", "url"),
		Cluster:  f.required("the cluster name in Burrow's configuration", "cluster"),
		Username: f.str("", "username"),
		Password: f.secret("password"),
	}
	if p.Egress != nil || len(f.fileCreds) > 0 {
		cfg.HTTPClient = p.httpClient(f)
	}
	group := f.required("the consumer group", "consumerGroup")
	if err := cfg.Validate(); err != nil {
		f.fail("metadata (burrow connection): %v", err)
	}
	m, act := backlogMetric(f, "burrow-lag-"+group, 10, "lagThreshold")
	return &Spec{
		dests:  []string{urlDest(cfg.URL, httpPorts)},
		Source: "burrow", Metrics: []MetricDef{m}, Activation: act,
		Key: fmt.Sprintf("burrow url=%s cluster=%s user=%s group=%s", cfg.URL, cfg.Cluster, cfg.Username, group),
		target: funcTarget(func(context.Context) (probe, error) {
			c, err := burrow.New(cfg)
			if err != nil {
				return nil, err
			}
			src, err := c.Group(group)
			if err != nil {
				return nil, err
			}
			return &sourceProbe{src: src, close: func() error { return nil }}, nil
		}),
	}, nil
}

// rabbitDests are the AMQP address and the management API's, both of
// which receive the password.
func rabbitDests(cfg rabbitmq.Config) []string {
	var out []string
	switch {
	case cfg.URL != "":
		out = append(out, urlDest(cfg.URL, amqpPorts))
	case cfg.Host != "":
		port := cfg.Port
		if port == 0 {
			port = 5672
			if cfg.TLS.Enabled {
				port = 5671
			}
		}
		out = append(out, net.JoinHostPort(cfg.Host, strconv.Itoa(port)))
	}
	if cfg.ManagementURL != "" {
		out = append(out, urlDest(cfg.ManagementURL, httpPorts))
	}
	return out
}
