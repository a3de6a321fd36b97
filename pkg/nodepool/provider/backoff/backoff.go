// Package backoff paces a cloud provider's HTTP calls and retries the ones
// the API turned away for load or a passing fault. Every HTTP provider
// puts its SDK on top of this one transport, so all clouds share the same
// rules: a token bucket ahead of each call, Retry-After obeyed on 429 and
// 5xx, and a bounded wait, after which the call fails and the scaler holds
// the pool until the next pass instead of blocking it.
package backoff

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Policy is how hard a transport pushes one provider's API.
type Policy struct {
	// Rate is the steady number of calls per second; negative means
	// unpaced.
	Rate float64
	// Burst is how many calls may go at once after a quiet spell (>= 1).
	Burst int
	// Attempts is the most tries of one call, the first included.
	Attempts int
	// Base is the wait before the first retry when the API names none; it
	// doubles with each retry, up to MaxWait.
	Base time.Duration
	// MaxWait is the longest single wait. An API asking for a longer
	// Retry-After gets its answer returned at once: the pool holds and the
	// next pass asks again.
	MaxWait time.Duration
	// Budget bounds the total waiting (pacing excluded) within one call.
	Budget time.Duration
	// AttemptTimeout bounds one try, answer body included, so an API that
	// accepts connections and never answers fails like one that is down.
	AttemptTimeout time.Duration
}

// Default is used for any zero field of a Policy: a few calls a second,
// four tries, waits of 0.5 s, 1 s, 2 s, never more than 30 s in all.
var Default = Policy{Rate: 2, Burst: 5, Attempts: 4, Base: 500 * time.Millisecond, MaxWait: 20 * time.Second, Budget: 30 * time.Second,
	AttemptTimeout: 30 * time.Second}

func (p Policy) withDefaults() Policy {
	if p.Rate == 0 {
		p.Rate = Default.Rate
	}
	if p.Burst < 1 {
		p.Burst = Default.Burst
	}
	if p.Attempts < 1 {
		p.Attempts = Default.Attempts
	}
	if p.Base <= 0 {
		p.Base = Default.Base
	}
	if p.MaxWait <= 0 {
		p.MaxWait = Default.MaxWait
	}
	if p.Budget <= 0 {
		p.Budget = Default.Budget
	}
	if p.AttemptTimeout <= 0 {
		p.AttemptTimeout = Default.AttemptTimeout
	}
	return p
}

// Sleeper waits d or until ctx ends, returning ctx's error in that case.
type Sleeper func(ctx context.Context, d time.Duration) error

// Transport is an http.RoundTripper that paces and retries calls. It is
// safe for concurrent use; one Transport serves one provider.
type Transport struct {
	next   http.RoundTripper
	policy Policy
	now    func() time.Time
	sleep  Sleeper

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// Option changes a Transport built by New.
type Option func(*Transport)

// WithClock replaces the wall clock and sleeping, so tests can see every
// wait without spending it.
func WithClock(now func() time.Time, sleep Sleeper) Option {
	return func(t *Transport) { t.now, t.sleep = now, sleep }
}

// New wraps next (nil is http.DefaultTransport) with policy p.
func New(next http.RoundTripper, p Policy, opts ...Option) *Transport {
	if next == nil {
		next = http.DefaultTransport
	}
	t := &Transport{next: next, policy: p.withDefaults(), now: time.Now, sleep: sleepCtx}
	for _, o := range opts {
		o(t)
	}
	return t
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// RoundTrip sends req, pacing it and retrying as the policy allows. The
// last answer (or error) is returned as is, so the SDK above reports the
// API's own error.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	body, err := replayable(req)
	if err != nil {
		return nil, err
	}
	var waited time.Duration
	for attempt := 1; ; attempt++ {
		if err := t.pace(ctx); err != nil {
			return nil, fmt.Errorf("waiting for the provider's rate limit: %w", err)
		}
		resp, err := t.try(req, body)
		wait, retry := t.retryAfter(ctx, req.Method, resp, err)
		if !retry || attempt >= t.policy.Attempts || ctx.Err() != nil {
			return resp, err
		}
		if wait <= 0 {
			wait = min(t.policy.Base<<(attempt-1), t.policy.MaxWait)
		}
		if wait > t.policy.MaxWait || waited+wait > t.policy.Budget {
			return resp, err
		}
		discard(resp)
		if err := t.sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("backing off from the provider: %w", err)
		}
		waited += wait
	}
}

// try sends one copy of req under the attempt timeout, which ends when
// the answer's body is closed.
func (t *Transport) try(req *http.Request, body []byte) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), t.policy.AttemptTimeout)
	resp, err := t.next.RoundTrip(attempt(ctx, req, body))
	if err != nil || resp == nil || resp.Body == nil {
		cancel()
		return resp, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose releases an attempt's timeout with its answer's body.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	defer c.cancel()
	return c.ReadCloser.Close()
}

// attempt is one try's copy of req with a fresh body.
func attempt(ctx context.Context, req *http.Request, body []byte) *http.Request {
	r := req.Clone(ctx)
	if body != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		r.ContentLength = int64(len(body))
	}
	return r
}

// replayable reads the request body once so each try can send it.
func replayable(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	b, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return b, nil
}

// discard drains and closes an answer that will not be returned, so the
// connection can be reused.
func discard(resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
}

// idempotent methods may be repeated when the API failed mid-call; a POST
// (e.g. "create a server") is only repeated when the API said it did
// nothing (429), or a failed call could create two machines.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// retryAfter says whether to try again and how long the API asked to wait
// (0: it did not say).
// An attempt that timed out counts as a connection error; the caller's
// own context ending stops at once.
func (t *Transport) retryAfter(ctx context.Context, method string, resp *http.Response, err error) (time.Duration, bool) {
	if err != nil {
		return 0, ctx.Err() == nil && idempotent(method)
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests:
		return t.asked(resp), true
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return t.asked(resp), idempotent(method)
	}
	return 0, false
}

// asked reads Retry-After (seconds or an HTTP date), else RateLimit-Reset
// (a Unix time, as DigitalOcean and Hetzner send on 429).
func (t *Transport) asked(resp *http.Response) time.Duration {
	if v := resp.Header.Get("Retry-After"); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
			return time.Duration(s * float64(time.Second))
		}
		if at, err := http.ParseTime(v); err == nil {
			return max(at.Sub(t.now()), 0)
		}
	}
	if resp.StatusCode != http.StatusTooManyRequests {
		return 0
	}
	if v := resp.Header.Get("RateLimit-Reset"); v != "" {
		if unix, err := strconv.ParseInt(v, 10, 64); err == nil {
			return max(time.Unix(unix, 0).Sub(t.now()), 0)
		}
	}
	return 0
}

// pace takes a token from the bucket, waiting for one if it is empty.
// Tokens go negative to queue concurrent callers in order.
func (t *Transport) pace(ctx context.Context) error {
	if t.policy.Rate <= 0 {
		return nil
	}
	t.mu.Lock()
	now := t.now()
	if t.last.IsZero() {
		t.tokens = float64(t.policy.Burst)
	} else {
		t.tokens = min(float64(t.policy.Burst), t.tokens+now.Sub(t.last).Seconds()*t.policy.Rate)
	}
	t.last = now
	t.tokens--
	var wait time.Duration
	if t.tokens < 0 {
		wait = time.Duration(-t.tokens / t.policy.Rate * float64(time.Second))
	}
	t.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	return t.sleep(ctx, wait)
}

// Client is an *http.Client whose transport is a Transport over base's
// transport, keeping base's timeout. Providers hand it to their SDK.
func Client(base *http.Client, p Policy, opts ...Option) *http.Client {
	if base == nil {
		base = &http.Client{}
	}
	return &http.Client{Timeout: base.Timeout, Transport: New(base.Transport, p, opts...)}
}

// BearerClient is Client with the token set as "Authorization: Bearer" on
// each request before it is paced, for SDKs that take no token of their
// own. The token goes into that header and nowhere else.
func BearerClient(base *http.Client, token string, p Policy, opts ...Option) *http.Client {
	c := Client(base, p, opts...)
	c.Transport = &bearer{token: token, next: c.Transport}
	return c
}

// bearer adds the token to each request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}
