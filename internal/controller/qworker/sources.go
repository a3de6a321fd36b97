package qworker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

	mu    sync.Mutex
	conns map[types.NamespacedName]*conn
}

// conn is one broker connection and the fingerprint of the config it was
// made from.
type conn struct {
	fingerprint string
	redis       *redissource.Client
}

// NewSources returns a provider reading ScalerConfigs from c and Secrets
// from secrets (an uncached reader).
func NewSources(c, secrets client.Reader) *Sources {
	return &Sources{Client: c, Secrets: secrets}
}

// Source implements SourceProvider.
func (s *Sources) Source(ctx context.Context, namespace, name, queue string) (source.Source, error) {
	sc := &qv1.ScalerConfig{}
	if err := s.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, sc); err != nil {
		return nil, fmt.Errorf("get ScalerConfig: %w", err)
	}
	switch sc.Spec.Type {
	case qv1.BrokerRedis:
		c, err := s.redisClient(ctx, sc)
		if err != nil {
			return nil, err
		}
		ref, err := redissource.ParseQueueRef(queue)
		if err != nil {
			return nil, fmt.Errorf("spec.scaleConfig.queue: %w", err)
		}
		return c.Queue(ref)
	default:
		return nil, unsupported(sc)
	}
}

func unsupported(sc *qv1.ScalerConfig) error {
	return fmt.Errorf("ScalerConfig %s/%s: spec.type %q is not supported by this build of Swell (supported: redis)", sc.Namespace, sc.Name, sc.Spec.Type)
}

// Ping checks a ScalerConfig's broker with a fresh connection, for its
// status: a cached connection could hide that the broker went away.
func (s *Sources) Ping(ctx context.Context, sc *qv1.ScalerConfig) error {
	switch sc.Spec.Type {
	case qv1.BrokerRedis:
		cfg, err := s.redisConfig(ctx, sc)
		if err != nil {
			return err
		}
		c, err := redissource.New(ctx, cfg)
		if err != nil {
			return err
		}
		return c.Close()
	default:
		return unsupported(sc)
	}
}

// Forget closes the connection of a deleted ScalerConfig.
func (s *Sources) Forget(key types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.conns[key]; c != nil {
		c.close()
		delete(s.conns, key)
	}
}

func (c *conn) close() {
	if c.redis != nil {
		_ = c.redis.Close()
	}
}

func (s *Sources) redisClient(ctx context.Context, sc *qv1.ScalerConfig) (*redissource.Client, error) {
	cfg, err := s.redisConfig(ctx, sc)
	if err != nil {
		return nil, err
	}
	fp := fingerprint(fmt.Sprintf("%s|%d|%s|%d|%v|%v|%s|%s|%s|%v", cfg.Host, cfg.Port, cfg.Username, cfg.DB, cfg.TLS.Enabled,
		cfg.KeyspaceNotifications, cfg.Password.Reveal(), cfg.TLS.CAPEM, cfg.TLS.CertPEM, cfg.TLS.InsecureSkipVerify))
	key := types.NamespacedName{Namespace: sc.Namespace, Name: sc.Name}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = map[types.NamespacedName]*conn{}
	}
	if c := s.conns[key]; c != nil && c.fingerprint == fp && c.redis != nil {
		return c.redis, nil
	} else if c != nil {
		c.close()
		delete(s.conns, key)
	}
	rc, err := redissource.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ScalerConfig %s/%s: %w", sc.Namespace, sc.Name, err)
	}
	s.conns[key] = &conn{fingerprint: fp, redis: rc}
	return rc, nil
}

func (s *Sources) redisConfig(ctx context.Context, sc *qv1.ScalerConfig) (redissource.Config, error) {
	c := sc.Spec.Config
	port := 0
	if c.Port != "" {
		p, err := strconv.Atoi(c.Port)
		if err != nil {
			return redissource.Config{}, fmt.Errorf("ScalerConfig %s/%s spec.config.port %q: %w", sc.Namespace, sc.Name, c.Port, err)
		}
		port = p
	}
	password, err := s.password(ctx, sc.Namespace, c.Password)
	if err != nil {
		return redissource.Config{}, err
	}
	tlsOpts, err := s.tlsOptions(ctx, sc.Namespace, c.TLS)
	if err != nil {
		return redissource.Config{}, err
	}
	return redissource.Config{
		Host: c.Host, Port: port, Username: c.Username, Password: brokerconn.Secret(password), DB: int(c.DB),
		TLS: tlsOpts, KeyspaceNotifications: c.KeyspaceNotifications, DialTimeout: 3 * time.Second,
	}, nil
}

// password resolves QScaler's password field: inline, secret, or the older
// valueFrom.secretKeyRef.
func (s *Sources) password(ctx context.Context, ns string, p *qv1.Password) (string, error) {
	switch {
	case p == nil:
		return "", nil
	case p.Secret != nil:
		return s.secretKey(ctx, ns, p.Secret.Name, p.Secret.Key, "spec.config.password.secret")
	case p.ValueFrom != nil:
		return s.secretKey(ctx, ns, p.ValueFrom.SecretKeyRef.Name, p.ValueFrom.SecretKeyRef.Key, "spec.config.password.valueFrom.secretKeyRef")
	default:
		return p.Value, nil
	}
}

func (s *Sources) secretKey(ctx context.Context, ns, name, key, field string) (string, error) {
	secret := &corev1.Secret{}
	if err := s.Secrets.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, secret); err != nil {
		return "", fmt.Errorf("%s: Secret %s/%s: %w", field, ns, name, err)
	}
	v, ok := secret.Data[key]
	if !ok {
		return "", fmt.Errorf("%s: Secret %s/%s has no key %q", field, ns, name, key)
	}
	return strings.TrimRight(string(v), "\r\n"), nil
}

// tlsOptions reads the TLS material from Secrets.
func (s *Sources) tlsOptions(ctx context.Context, ns string, t *qv1.TLS) (brokerconn.TLS, error) {
	if t == nil || !t.Enabled {
		return brokerconn.TLS{}, nil
	}
	out := brokerconn.TLS{Enabled: true, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CASecret != "" {
		ca, err := s.secretKey(ctx, ns, t.CASecret, "ca.crt", "spec.config.tls.caSecret")
		if err != nil {
			return out, err
		}
		out.CAPEM = []byte(ca)
	}
	if t.CertSecret != "" {
		crt, err := s.secretKey(ctx, ns, t.CertSecret, "tls.crt", "spec.config.tls.certSecret")
		if err != nil {
			return out, err
		}
		key, err := s.secretKey(ctx, ns, t.CertSecret, "tls.key", "spec.config.tls.certSecret")
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
