package egress

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

func mustPolicy(t *testing.T, cfg Config) *Policy {
	t.Helper()
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckDefaultRanges(t *testing.T) {
	p := mustPolicy(t, Config{})
	cases := []struct {
		addr string
		want string // substring of the refusal; "" means allowed
	}{
		{"169.254.169.254:80", "link-local"},
		{"169.254.0.1:443", "link-local"},
		{"127.0.0.1:8080", "loopback"},
		{"127.9.9.9:1", "loopback"},
		{"0.0.0.0:80", "unspecified"},
		{"10.96.0.1:443", "RFC 1918"},
		{"172.16.0.1:80", "RFC 1918"},
		{"172.31.255.255:80", "RFC 1918"},
		{"192.168.1.1:80", "RFC 1918"},
		{"100.64.0.1:80", "RFC 6598"},
		{"224.0.0.1:80", "multicast"},
		{"255.255.255.255:80", "reserved"},
		{"[::1]:80", "loopback"},
		{"[::]:80", "unspecified"},
		{"[fe80::1]:80", "link-local"},
		{"[fe80::1%eth0]:80", "link-local"},
		{"[fd00:ec2::254]:80", "unique local"},
		{"[ff02::1]:80", "multicast"},
		{"[::ffff:127.0.0.1]:80", "loopback"},
		{"[::ffff:169.254.169.254]:80", "link-local"},
		{"[64:ff9b::a9fe:a9fe]:80", "NAT64 for 169.254.169.254"},
		{"[64:ff9b::808:808]:53", ""},
		{"8.8.8.8:443", ""},
		{"172.32.0.1:80", ""},
		{"[2001:db8::1]:443", ""},
	}
	for _, c := range cases {
		t.Run(c.addr, func(t *testing.T) {
			err := p.Check("", netip.MustParseAddrPort(c.addr))
			if c.want == "" {
				if err != nil {
					t.Fatalf("Check(%s) = %v, want allowed", c.addr, err)
				}
				return
			}
			var re *RefusedError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "--egress-allow=") {
				t.Fatalf("Check(%s) = %v, want a refusal naming %q and --egress-allow", c.addr, err, c.want)
			}
		})
	}
}

func TestCheckAllowListAndAPIServer(t *testing.T) {
	p := mustPolicy(t, Config{
		Allow:     []string{"10.20.0.0/16", "10.0.0.5", "192.168.1.7:6379", "[fd00::9]:443", "Prometheus.Monitoring.svc:9090", "127.0.0.0/8"},
		Deny:      []string{"203.0.113.0/24"},
		APIServer: []string{"https://127.0.0.1:6443", "10.20.0.1"},
		AllowFlag: "--allow-this",
	})
	cases := []struct {
		name, host, addr string
		want             string
	}{
		{"range allowed", "", "10.20.3.4:80", ""},
		{"outside the allowed range", "", "10.21.0.1:80", "RFC 1918"},
		{"address allowed on any port", "", "10.0.0.5:1234", ""},
		{"address:port allowed", "", "192.168.1.7:6379", ""},
		{"address:port other port", "", "192.168.1.7:6380", "RFC 1918"},
		{"ipv6 address:port", "", "[fd00::9]:443", ""},
		{"ipv6 other port", "", "[fd00::9]:80", "unique local"},
		{"name:port asked for", "prometheus.monitoring.svc.:9090", "10.99.0.1:9090", ""},
		{"name on another port", "prometheus.monitoring.svc:9091", "10.99.0.1:9091", "RFC 1918"},
		{"operator deny range", "", "203.0.113.9:443", "named by the operator"},
		{"apiserver not re-opened by a range", "", "127.0.0.1:6443", "Kubernetes API server"},
		{"apiserver host's other ports re-opened by a range", "", "127.0.0.1:80", ""},
		{"apiserver inside an allowed range", "", "10.20.0.1:443", "Kubernetes API server"},
		{"other loopback allowed by range", "", "127.0.0.2:80", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := p.Check(c.host, netip.MustParseAddrPort(c.addr))
			if c.want == "" {
				if err != nil {
					t.Fatalf("Check = %v, want allowed", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "--allow-this=") {
				t.Fatalf("Check = %v, want a refusal naming %q and --allow-this", err, c.want)
			}
		})
	}
	exact := mustPolicy(t, Config{Allow: []string{"127.0.0.1:6443"}, APIServer: []string{"127.0.0.1"}})
	if err := exact.Check("", netip.MustParseAddrPort("127.0.0.1:6443")); err != nil {
		t.Fatalf("an exact allow-list entry must re-open the API server: %v", err)
	}
}

func TestNewRejectsBadEntries(t *testing.T) {
	for _, cfg := range []Config{
		{Allow: []string{"10.0.0.0/33"}},
		{Allow: []string{"not an address"}},
		{Allow: []string{"host-without-port"}},
		{Deny: []string{"10.0.0.1"}},
		{APIServer: []string{"apiserver.invalid"}, Lookup: func(context.Context, string) ([]netip.Addr, error) { return nil, errors.New("no such host") }},
	} {
		if _, err := New(context.Background(), cfg); err == nil {
			t.Errorf("New(%+v) accepted a bad entry", cfg)
		}
	}
}

func TestNilPolicyAllowsEverything(t *testing.T) {
	var p *Policy
	if err := p.Check("", netip.MustParseAddrPort("169.254.169.254:80")); err != nil {
		t.Fatal(err)
	}
}

// counting is a loopback server that counts the requests it receives.
func counting(t *testing.T, addr string, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}))
	_ = srv.Listener.Close()
	srv.Listener = lis
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestDialRefusesBeforeConnecting(t *testing.T) {
	internal, hits := counting(t, "127.0.0.2:0", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("secret")) })
	p := mustPolicy(t, Config{})
	err := getErr(p, internal.URL)
	var re *RefusedError
	if !errors.As(err, &re) || re.Addr.Addr() != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("GET %s = %v, want a RefusedError for 127.0.0.2", internal.URL, err)
	}
	if hits.Load() != 0 {
		t.Fatalf("the refused server received %d requests", hits.Load())
	}
	// A name resolving to a refused address is refused on the address.
	_, port, _ := net.SplitHostPort(internal.Listener.Addr().String())
	if _, err := p.DialContext(context.Background(), "tcp", net.JoinHostPort("localhost", port)); !errors.As(err, &re) {
		t.Fatalf("dial localhost = %v, want a RefusedError", err)
	}
	allowed := mustPolicy(t, Config{Allow: []string{internal.Listener.Addr().String()}})
	resp, err := allowed.HTTPClient(0, nil).Get(internal.URL)
	if err != nil {
		t.Fatalf("allowed GET: %v", err)
	}
	_ = resp.Body.Close()
	if hits.Load() != 1 {
		t.Fatalf("allowed server received %d requests, want 1", hits.Load())
	}
}

func TestRedirectsAreCheckedAndCapped(t *testing.T) {
	internal, internalHits := counting(t, "127.0.0.2:0", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("secret")) })
	public, _ := counting(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/loop" {
			http.Redirect(w, r, "/loop", http.StatusFound)
			return
		}
		http.Redirect(w, r, internal.URL+"/latest/meta-data", http.StatusFound)
	})
	// 127.0.0.1 stands for a public server; 127.0.0.2 for the internal one.
	p := mustPolicy(t, Config{Allow: []string{"127.0.0.1"}})
	err := getErr(p, public.URL+"/go")
	var re *RefusedError
	if !errors.As(err, &re) || re.Addr.Addr() != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("redirect to the internal server = %v, want a RefusedError for 127.0.0.2", err)
	}
	if internalHits.Load() != 0 {
		t.Fatalf("the internal server received %d requests through a redirect", internalHits.Load())
	}
	err = getErr(p, public.URL+"/loop")
	if err == nil || !strings.Contains(err.Error(), "stopped after 3 redirects") {
		t.Fatalf("redirect loop = %v, want stopped after 3 redirects", err)
	}
}

// TestAPIServerHostPorts: an API server named with its port (as the
// controller names it, from its kubeconfig URL) is refused on that port
// whatever range is allowed; its host's other ports are refused too, unless
// an allow entry covers them. One named without a port is refused on every
// port unless allowed exactly.
func TestAPIServerHostPorts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		allow     []string
		apiserver string
		addr      string
		want      string
	}{
		{"own port, range allowed", []string{"10.0.0.0/8"}, "https://10.1.2.3:6443", "10.1.2.3:6443", "Kubernetes API server"},
		{"own port from the scheme", []string{"10.0.0.0/8"}, "https://10.1.2.3", "10.1.2.3:443", "Kubernetes API server"},
		{"other port, range allowed", []string{"10.0.0.0/8"}, "https://10.1.2.3:6443", "10.1.2.3:10250", ""},
		{"other port, nothing allowed", nil, "https://203.0.113.7:6443", "203.0.113.7:10250", "API server's host"},
		{"own port, exact entry", []string{"10.1.2.3:6443"}, "https://10.1.2.3:6443", "10.1.2.3:6443", ""},
		{"host:port form", []string{"10.0.0.0/8"}, "10.1.2.3:6443", "10.1.2.3:6443", "Kubernetes API server"},
		{"no port: every port, range allowed", []string{"10.0.0.0/8"}, "10.1.2.3", "10.1.2.3:10250", "Kubernetes API server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPolicy(t, Config{Allow: tc.allow, APIServer: []string{tc.apiserver}})
			err := p.Check("", netip.MustParseAddrPort(tc.addr))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Check = %v, want allowed", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check = %v, want a refusal naming %q", err, tc.want)
			}
		})
	}
}

// getErr GETs url through p's client and returns only the error, closing
// any body.
func getErr(p *Policy, url string) error {
	resp, err := p.HTTPClient(0, nil).Get(url)
	if resp != nil {
		_ = resp.Body.Close()
	}
	return err
}

// TestAllowPrivate: the broker profile reaches in-cluster brokers on private
// ranges and still refuses loopback, metadata services, the API server and
// the operator's deny list.
func TestAllowPrivate(t *testing.T) {
	p := mustPolicy(t, Config{AllowPrivate: true, APIServer: []string{"10.96.0.1:443"}, Deny: []string{"10.200.0.0/16"}})
	cases := []struct {
		addr string
		want string // substring of the refusal; "" means allowed
	}{
		{"10.0.12.7:6379", ""},
		{"172.20.3.4:5672", ""},
		{"192.168.7.7:4222", ""},
		{"100.64.3.3:9092", ""},
		{"[fd12::7]:6379", ""},
		{"127.0.0.1:6379", "loopback"},
		{"169.254.169.254:80", "link-local"},
		{"[fd00:ec2::254]:80", "cloud metadata"},
		{"10.96.0.1:443", "API server"},
		{"10.200.1.1:6379", "deny list"},
	}
	for _, c := range cases {
		t.Run(c.addr, func(t *testing.T) {
			err := p.Check("", netip.MustParseAddrPort(c.addr))
			if c.want == "" {
				if err != nil {
					t.Fatalf("Check(%s) = %v, want allowed", c.addr, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Check(%s) = %v, want a refusal naming %q", c.addr, err, c.want)
			}
		})
	}
}
