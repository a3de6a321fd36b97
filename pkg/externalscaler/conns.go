package externalscaler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync"
)

// sharedConns shares broker clients among the targets of one Tracker:
// every target with the same connection settings (broker address,
// credentials, TLS) measures through one client, so a thousand queues on
// one Redis cost one connection pool and one batch of round trips, not a
// thousand. A client is closed when the last target using it goes.
type sharedConns struct {
	mu    sync.Mutex
	conns map[string]*sharedConn
}

// sharedConn is one client and the targets holding it.
type sharedConn struct {
	// ready closes when the dial finished; client or err is set then.
	ready  chan struct{}
	client io.Closer
	err    error
	refs   int
}

func newSharedConns() *sharedConns {
	return &sharedConns{conns: map[string]*sharedConn{}}
}

// acquire returns the client for fingerprint fp, dialling it when no target
// holds one (one dial at a time per fingerprint; the others wait for it),
// and the release the caller must call once when done with it. A failed
// dial is not kept: the next acquire dials again.
func (s *sharedConns) acquire(ctx context.Context, fp string, dial func(context.Context) (io.Closer, error)) (io.Closer, func() error, error) {
	s.mu.Lock()
	c := s.conns[fp]
	if c == nil {
		c = &sharedConn{ready: make(chan struct{})}
		s.conns[fp] = c
		c.refs++
		s.mu.Unlock()
		c.client, c.err = dial(ctx)
		if c.err != nil {
			s.forget(fp, c)
		}
		close(c.ready)
	} else {
		c.refs++
		s.mu.Unlock()
		select {
		case <-c.ready:
		case <-ctx.Done():
			_ = s.release(fp, c)
			return nil, nil, fmt.Errorf("waiting for a shared connection: %w", ctx.Err())
		}
	}
	if c.err != nil {
		_ = s.release(fp, c)
		return nil, nil, c.err
	}
	var once sync.Once
	return c.client, func() error {
		var err error
		once.Do(func() { err = s.release(fp, c) })
		return err
	}, nil
}

// release drops one reference to c, closing its client with the last.
func (s *sharedConns) release(fp string, c *sharedConn) error {
	s.mu.Lock()
	c.refs--
	last := c.refs == 0
	if last && s.conns[fp] == c {
		delete(s.conns, fp)
	}
	s.mu.Unlock()
	if !last || c.err != nil || c.client == nil {
		return nil
	}
	return c.client.Close()
}

// forget stops handing out c (its dial failed); its holders still
// release it.
func (s *sharedConns) forget(fp string, c *sharedConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns[fp] == c {
		delete(s.conns, fp)
	}
}

// len is the number of clients open or being dialled, for tests.
func (s *sharedConns) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// connFingerprint names a connection configuration, credentials included,
// without keeping them in the clear.
func connFingerprint(kind string, parts ...string) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + strings.Join(parts, "\x00")))
	return kind + ":" + hex.EncodeToString(sum[:])
}
