package brokersource

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
	kafkasource "github.com/swell-autoscaler/swell/pkg/source/kafka"
	natssource "github.com/swell-autoscaler/swell/pkg/source/nats"
	rabbitmqsource "github.com/swell-autoscaler/swell/pkg/source/rabbitmq"
	redissource "github.com/swell-autoscaler/swell/pkg/source/redis"
)

// Sources builds and shares broker connections, one per ScalerConfig and
// resolved configuration: a changed Secret or spec gets a new connection,
// and the old one is closed.
type Sources struct {
	// Client reads ScalerConfigs (from the cache).
	Client client.Reader
	// Secrets reads Secrets directly from the API server, so the controller
	// neither caches nor needs to list every Secret of the cluster.
	Secrets client.Reader
	// Dial opens every broker connection; the controller sets the egress
	// policy's dialer, so a ScalerConfig cannot point Swell (and the
	// credentials it holds) at loopback, a metadata service or the API
	// server. Nil dials directly.
	Dial brokerconn.DialFunc
	// RequireSecretAddresses refuses a Secret without the
	// swell.dev/allowed-addresses annotation (AllowedAddressesAnnotation)
	// as a source of broker credentials. Off, such Secrets are sent to the
	// ScalerConfig's broker as before; a Secret with the annotation is
	// bound to its addresses either way.
	RequireSecretAddresses bool

	mu    sync.Mutex
	conns map[types.NamespacedName]*conn
}

// NewSources returns a provider reading ScalerConfigs from c and Secrets
// from secrets (an uncached reader).
func NewSources(c, secrets client.Reader) *Sources {
	return &Sources{Client: c, Secrets: secrets}
}

// conn is one broker connection and the fingerprint of the resolved
// configuration it was made from.
type conn struct {
	fingerprint string
	client      brokerClient
	// queues caches one source per queue string and owner, so callers get
	// the same source (and push subscription) until the connection changes.
	queues map[queueKey]source.Source
}

// queueKey names a cached source: the queue string and the QWorker the
// source measures for ("" for PodAutoscalers and other callers).
type queueKey struct{ queue, owner string }

// brokerClient is a shared broker connection that hands out queue sources.
// owner is "<namespace>/<qworker>" or ""; brokers that keep no per-worker
// state ignore it.
type brokerClient interface {
	Queue(queue, owner string) (source.Source, error)
	Close() error
}

// Source returns the shared source measuring queue of the ScalerConfig
// namespace/name for a caller that is no QWorker (it implements the
// PodAutoscaler reconciler's SourceProvider interface): on Redis, the tasks
// held by dead SDK workers of every QWorker on that list count.
func (s *Sources) Source(ctx context.Context, namespace, name, queue string) (source.Source, error) {
	return s.source(ctx, namespace, name, queue, "")
}

// QWorkerSource returns the shared source measuring queue of the
// ScalerConfig namespace/name for the QWorker namespace/qworker (it
// implements the QWorker reconciler's SourceProvider interface). The
// QWorker is the source's owner: on a Redis list, only the tasks held by
// dead SDK workers of that QWorker count as its backlog, so two QWorkers
// sharing a list (in different namespaces, or side by side) never count,
// and wake up for, each other's.
func (s *Sources) QWorkerSource(ctx context.Context, namespace, name, queue, qworker string) (source.Source, error) {
	if qworker == "" {
		return nil, fmt.Errorf("queue %q: no QWorker named as the source's owner", queue)
	}
	return s.source(ctx, namespace, name, queue, namespace+"/"+qworker)
}

func (s *Sources) source(ctx context.Context, namespace, name, queue, owner string) (source.Source, error) {
	sc := &qv1.ScalerConfig{}
	if err := s.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, sc); err != nil {
		return nil, fmt.Errorf("get ScalerConfig: %w", err)
	}
	c, err := s.conn(ctx, sc)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := queueKey{queue: queue, owner: owner}
	if src, ok := c.queues[key]; ok {
		return src, nil
	}
	src, err := c.client.Queue(queue, owner)
	if err != nil {
		return nil, fmt.Errorf("queue %q: %w", queue, err)
	}
	c.queues[key] = src
	return src, nil
}

// Ping checks a ScalerConfig's broker with a fresh connection, for its
// status: a cached connection could hide that the broker went away.
func (s *Sources) Ping(ctx context.Context, sc *qv1.ScalerConfig) error {
	r, err := s.resolve(ctx, sc)
	if err != nil {
		return err
	}
	c, err := dial(ctx, sc, r, s.Dial)
	if err != nil {
		return err
	}
	return c.Close()
}

// Forget closes the connection of a deleted ScalerConfig.
func (s *Sources) Forget(key types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.conns[key]; c != nil {
		_ = c.client.Close()
		delete(s.conns, key)
	}
}

// Close closes every broker connection, when the controller's term as
// leader ends: the next term builds its own Sources.
func (s *Sources) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, c := range s.conns {
		_ = c.client.Close()
		delete(s.conns, key)
	}
}

// conn returns the shared connection for sc, making a new one when the
// resolved configuration (spec or Secrets) changed.
func (s *Sources) conn(ctx context.Context, sc *qv1.ScalerConfig) (*conn, error) {
	r, err := s.resolve(ctx, sc)
	if err != nil {
		return nil, err
	}
	fp := r.fingerprint(sc)
	key := types.NamespacedName{Namespace: sc.Namespace, Name: sc.Name}
	if c := s.cached(key, fp); c != nil {
		return c, nil
	}
	// Dial without the lock: a dead broker must not hold up the QWorkers
	// of every other ScalerConfig.
	bc, err := dial(ctx, sc, r, s.Dial)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = map[types.NamespacedName]*conn{}
	}
	if cur := s.conns[key]; cur != nil {
		if cur.fingerprint == fp {
			_ = bc.Close() // another reconcile won the race
			return cur, nil
		}
		_ = cur.client.Close()
	}
	c := &conn{fingerprint: fp, client: bc, queues: map[queueKey]source.Source{}}
	s.conns[key] = c
	return c, nil
}

// cached returns the connection for key if it was made from fingerprint fp.
func (s *Sources) cached(key types.NamespacedName, fp string) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.conns[key]; c != nil && c.fingerprint == fp {
		return c
	}
	return nil
}

// resolved is a ScalerConfig's credentials and TLS material, read from Secrets.
type resolved struct {
	password string
	tls      brokerconn.TLS
}

func (r resolved) fingerprint(sc *qv1.ScalerConfig) string {
	spec, _ := json.Marshal(sc.Spec)
	return fingerprint(fmt.Sprintf("%s|%s|%s|%s|%s", spec, r.password, r.tls.CAPEM, r.tls.CertPEM, r.tls.KeyPEM.Reveal()))
}

// resolve reads sc's Secrets. Credential Secrets (the password and the
// client certificate) are checked against the broker addresses first, so a
// Secret is never sent where its owner did not allow; the CA certificate
// is not sent anywhere and is not checked.
func (s *Sources) resolve(ctx context.Context, sc *qv1.ScalerConfig) (resolved, error) {
	b := &binding{dests: brokerAddresses(sc), require: s.RequireSecretAddresses}
	password, err := s.password(ctx, sc.Namespace, sc.Spec.Config.Password, b)
	if err != nil {
		return resolved{}, err
	}
	t, err := s.tlsOptions(ctx, sc.Namespace, sc.Spec.Config.TLS, b)
	if err != nil {
		return resolved{}, err
	}
	return resolved{password: password, tls: t}, nil
}

// dial connects to sc's broker within dialTimeout: a broker that accepts
// connections and never answers must fail the dial, not hang it.
func dial(ctx context.Context, sc *qv1.ScalerConfig, r resolved, dialFn brokerconn.DialFunc) (brokerClient, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c := sc.Spec.Config
	port, err := portNumber(c.Port)
	if err != nil {
		return nil, fmt.Errorf("ScalerConfig %s/%s spec.config.port: %w", sc.Namespace, sc.Name, err)
	}
	pw := brokerconn.Secret(r.password)
	var bc brokerClient
	switch sc.Spec.Type {
	case qv1.BrokerRedis:
		var rc *redissource.Client
		rc, err = redissource.New(ctx, redissource.Config{Host: c.Host, Port: port, Username: c.Username, Password: pw, DB: int(c.DB),
			TLS: r.tls, KeyspaceNotifications: c.KeyspaceNotifications, DialTimeout: dialTimeout, Dial: dialFn})
		bc = redisClient{rc}
	case qv1.BrokerRabbitMQ:
		var rc *rabbitmqsource.Client
		rc, err = rabbitmqsource.New(ctx, rabbitmqsource.Config{URL: c.URL, Host: c.Host, Port: port, Username: c.Username, Password: pw,
			VHost: c.VHost, TLS: r.tls, ManagementURL: c.ManagementURL, DialTimeout: dialTimeout, Dial: dialFn})
		bc = rabbitmqClient{rc}
	case qv1.BrokerNATS:
		url := natsURL(c, port)
		var nc *natssource.Client
		nc, err = natssource.New(ctx, natssource.Config{URL: url, Username: c.Username, Password: pw, TLS: r.tls, Stream: c.Stream, DialTimeout: dialTimeout, Dial: dialFn})
		bc = natsClient{nc}
	case qv1.BrokerKafka:
		var kc *kafkasource.Client
		kc, err = kafkasource.New(ctx, kafkasource.Config{Brokers: c.Brokers, ConsumerGroup: c.ConsumerGroup, SASLMechanism: c.SASLMechanism,
			Username: c.Username, Password: pw, TLS: r.tls, DialTimeout: dialTimeout, Dial: dialFn})
		bc = kafkaClient{kc}
	default:
		return nil, fmt.Errorf("ScalerConfig %s/%s: spec.type %q is not one of redis, rabbitmq, nats, kafka", sc.Namespace, sc.Name, sc.Spec.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("ScalerConfig %s/%s: %w", sc.Namespace, sc.Name, err)
	}
	return bc, nil
}

// dialTimeout bounds connecting, so a dead broker fails a reconcile quickly.
const dialTimeout = 3 * time.Second

func portNumber(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return p, nil
}

// Adapters from each broker package's queue reference to the QWorker's
// queue string and owner.
type (
	redisClient    struct{ *redissource.Client }
	rabbitmqClient struct{ *rabbitmqsource.Client }
	natsClient     struct{ *natssource.Client }
	kafkaClient    struct{ *kafkasource.Client }
)

// Queue sets the QWorker as the reference's Owner: the processing lists of
// Swell's SDK workers are named by their QWorker.
func (c redisClient) Queue(q, owner string) (source.Source, error) {
	ref, err := redisQueueRef(q, owner)
	if err != nil {
		return nil, err
	}
	return c.Client.Queue(ref)
}

// redisQueueRef parses a QWorker's Redis queue string and names owner
// ("<namespace>/<qworker>", or "" for every QWorker) as its Owner.
func redisQueueRef(q, owner string) (redissource.QueueRef, error) {
	ref, err := redissource.ParseQueueRef(q)
	if err != nil {
		return ref, err
	}
	ref.Owner = owner
	return ref, nil
}

func (c rabbitmqClient) Queue(q, _ string) (source.Source, error) { return c.Client.Queue(q) }

func (c natsClient) Queue(q, _ string) (source.Source, error) {
	ref, err := natssource.ParseQueueRef(q)
	if err != nil {
		return nil, err
	}
	return c.Client.Queue(ref)
}

func (c kafkaClient) Queue(q, _ string) (source.Source, error) {
	return c.Client.Queue(kafkasource.QueueRef{Topic: q})
}

// password resolves QScaler's password field: inline, secret, or the older
// valueFrom.secretKeyRef.
// b binds the Secret to the broker's addresses.
func (s *Sources) password(ctx context.Context, ns string, p *qv1.Password, b *binding) (string, error) {
	switch {
	case p == nil:
		return "", nil
	case p.Secret != nil:
		return s.secretKey(ctx, ns, p.Secret.Name, p.Secret.Key, "spec.config.password.secret", b)
	case p.ValueFrom != nil:
		return s.secretKey(ctx, ns, p.ValueFrom.SecretKeyRef.Name, p.ValueFrom.SecretKeyRef.Key, "spec.config.password.valueFrom.secretKeyRef", b)
	default:
		return p.Value, nil
	}
}

// secretKey reads key of the Secret ns/name, named by field. With b (a
// credential) the Secret must allow the broker's addresses first; nil (the
// CA certificate) reads it unchecked.
func (s *Sources) secretKey(ctx context.Context, ns, name, key, field string, b *binding) (string, error) {
	secret := &corev1.Secret{}
	if err := s.Secrets.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, secret); err != nil {
		return "", fmt.Errorf("%s: Secret %s/%s: %w", field, ns, name, err)
	}
	if b != nil {
		if err := b.check(secret, ns+"/"+name, field); err != nil {
			return "", err
		}
	}
	v, ok := secret.Data[key]
	if !ok {
		return "", fmt.Errorf("%s: Secret %s/%s has no key %q", field, ns, name, key)
	}
	return strings.TrimRight(string(v), "\r\n"), nil
}

// tlsOptions reads the TLS material from Secrets.
// The client certificate's Secret is bound by b as a credential.
func (s *Sources) tlsOptions(ctx context.Context, ns string, t *qv1.TLS, b *binding) (brokerconn.TLS, error) {
	if t == nil || !t.Enabled {
		return brokerconn.TLS{}, nil
	}
	out := brokerconn.TLS{Enabled: true, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CASecret != "" {
		ca, err := s.secretKey(ctx, ns, t.CASecret, "ca.crt", "spec.config.tls.caSecret", nil)
		if err != nil {
			return out, err
		}
		out.CAPEM = []byte(ca)
	}
	if t.CertSecret != "" {
		crt, err := s.secretKey(ctx, ns, t.CertSecret, "tls.crt", "spec.config.tls.certSecret", b)
		if err != nil {
			return out, err
		}
		key, err := s.secretKey(ctx, ns, t.CertSecret, "tls.key", "spec.config.tls.certSecret", b)
		if err != nil {
			return out, err
		}
		out.CertPEM, out.KeyPEM = []byte(crt), brokerconn.Secret(key)
	}
	return out, nil
}

// fingerprint identifies a resolved configuration without keeping its
// secrets in the clear.
func fingerprint(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
