package egress

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// MaxRedirects is how many redirects a Policy's HTTP client follows; each
// new destination is checked again when it is dialled.
const MaxRedirects = 3

// DialFunc opens a connection, the shape go-redis, franz-go and
// http.Transport take.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// requestedKey carries the name:port asked for to the Control hook, which
// only sees the resolved address.
type requestedKey struct{}

// Dialer returns a dial function that connects through base (a zero
// net.Dialer when nil) and refuses, in its Control hook, every address the
// policy refuses. A nil Policy returns base's DialContext unchanged.
func (p *Policy) Dialer(base *net.Dialer) DialFunc {
	d := net.Dialer{}
	if base != nil {
		d = *base
	}
	if p == nil {
		return d.DialContext
	}
	inner := d.ControlContext
	d.Control = nil
	d.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
		if err := p.control(ctx, address); err != nil {
			return err
		}
		if inner != nil {
			return inner(ctx, network, address, c)
		}
		return nil
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		return d.DialContext(context.WithValue(ctx, requestedKey{}, address), network, address)
	}
}

// DialContext dials with a default net.Dialer under the policy.
func (p *Policy) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return p.Dialer(nil)(ctx, network, address)
}

func (p *Policy) control(ctx context.Context, address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("egress: cannot check address %q: %w", address, err)
	}
	host, _ := ctx.Value(requestedKey{}).(string)
	return p.Check(host, ap)
}

// Transport returns an HTTP transport that dials under the policy, with
// tlsCfg (nil: system defaults). It uses no proxy from the environment: a
// proxy would be the address checked, not the destination.
func (p *Policy) Transport(tlsCfg *tls.Config) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	if p != nil {
		tr.Proxy = nil
		tr.DialContext = p.Dialer(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second})
	}
	return tr
}

// HTTPClient returns a client on Transport(tlsCfg) with timeout (0: none)
// that follows at most MaxRedirects redirects.
func (p *Policy) HTTPClient(timeout time.Duration, tlsCfg *tls.Config) *http.Client {
	return &http.Client{Transport: p.Transport(tlsCfg), Timeout: timeout, CheckRedirect: CheckRedirect}
}

// CheckRedirect stops after MaxRedirects and strips credentials from a
// redirect that leaves the first request's origin, for clients built
// elsewhere; the dial hook checks where each redirect goes.
//
// net/http itself keeps Authorization and Cookie on a redirect to the same
// host name (or a subdomain) whatever the port or scheme, so a destination
// that answers with a redirect to another port of its host, or from https
// to http, would receive the bearer token or password meant for it. A
// credential is meant for one origin (scheme, host and port); any other
// gets the request without it.
func CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= MaxRedirects {
		return fmt.Errorf("stopped after %d redirects (at %s)", MaxRedirects, req.URL.Host)
	}
	if len(via) > 0 && !SameOrigin(via[0].URL, req.URL) {
		StripCredentials(req.Header)
	}
	return nil
}

// credentialHeaders are the request headers that carry a credential.
var credentialHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Cookie2"}

// StripCredentials deletes the headers that carry credentials
// (Authorization, Proxy-Authorization, Cookie).
func StripCredentials(h http.Header) {
	for _, k := range credentialHeaders {
		h.Del(k)
	}
}

// SameOrigin reports whether a and b have the same scheme, host and port,
// the scheme's default port standing for an omitted one. Host names compare
// case-insensitively and without a trailing dot; a subdomain is another
// origin.
func SameOrigin(a, b *url.URL) bool {
	if a == nil || b == nil {
		return false
	}
	return strings.EqualFold(a.Scheme, b.Scheme) && Origin(a) == Origin(b)
}

// Origin is u's host:port in lower case, with the scheme's default port
// (80 for http, 443 for https) when none is written.
func Origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[strings.ToLower(u.Scheme)]
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.ToLower(u.Hostname()), "."), port)
}
