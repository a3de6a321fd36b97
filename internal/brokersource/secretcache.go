package brokersource

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// DefaultSecretTTL is how long a Secret read for a broker connection is
// reused before it is read again: a rotated password or certificate takes
// effect within it, and a ScalerConfig serving many QWorkers costs one
// Secret GET per TTL instead of one per QWorker measurement.
const DefaultSecretTTL = 30 * time.Second

// SecretCache reads Secrets by name through an uncached reader and keeps
// each for a TTL. It needs only `get` on Secrets: unlike an informer it
// neither lists nor watches, so the controller holds no copy of Secrets it
// was never pointed at. Failed reads are not kept: a Secret created or
// fixed after the ScalerConfig is picked up on the next pass.
type SecretCache struct {
	reader client.Reader
	ttl    time.Duration
	now    func() time.Time

	mu        sync.Mutex
	entries   map[types.NamespacedName]secretEntry
	lastSweep time.Time
}

// secretEntry is one Secret and when it was read.
type secretEntry struct {
	secret *corev1.Secret
	read   time.Time
}

// NewSecretCache reads Secrets through reader and keeps each for ttl
// (DefaultSecretTTL when 0). now is the clock; nil is time.Now.
func NewSecretCache(reader client.Reader, ttl time.Duration, now func() time.Time) *SecretCache {
	if ttl <= 0 {
		ttl = DefaultSecretTTL
	}
	if now == nil {
		now = time.Now
	}
	return &SecretCache{reader: reader, ttl: ttl, now: now, entries: map[types.NamespacedName]secretEntry{}}
}

// Get reads the Secret key into obj, from the cache while it is fresh.
// Objects other than Secrets go straight to the reader.
func (c *SecretCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	secret, ok := obj.(*corev1.Secret)
	if !ok {
		return c.reader.Get(ctx, key, obj, opts...)
	}
	if cached := c.fresh(key); cached != nil {
		cached.DeepCopyInto(secret)
		return nil
	}
	if err := c.reader.Get(ctx, key, secret, opts...); err != nil {
		return err
	}
	c.store(key, secret)
	return nil
}

// store keeps secret, and once per TTL drops the entries gone stale, so
// Secrets no ScalerConfig reads any more do not stay in memory.
func (c *SecretCache) store(key types.NamespacedName, secret *corev1.Secret) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.entries[key] = secretEntry{secret: secret.DeepCopy(), read: now}
	if now.Sub(c.lastSweep) < c.ttl {
		return
	}
	c.lastSweep = now
	for k, e := range c.entries {
		if now.Sub(e.read) >= c.ttl {
			delete(c.entries, k)
		}
	}
}

// fresh is the cached Secret key if it was read within the TTL.
func (c *SecretCache) fresh(key types.NamespacedName) *corev1.Secret {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return nil
	}
	if c.now().Sub(e.read) >= c.ttl {
		return nil
	}
	return e.secret
}

// List is not served: Swell reads Secrets by name only (its Role grants
// get, not list).
func (c *SecretCache) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return fmt.Errorf("brokersource: Secrets are read by name only")
}
