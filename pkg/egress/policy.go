package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultAllowFlag is the flag named in refusals when Config.AllowFlag is
// empty; every Swell command that makes user-configured calls has it.
const DefaultAllowFlag = "--egress-allow"

// rangeRule is a refused range and why it is refused.
type rangeRule struct {
	prefix netip.Prefix
	why    string
}

// defaultDenied are refused unless allowed. Each reason says what lives
// there, so a refusal explains itself:
//
//   - loopback and unspecified addresses reach the host Swell runs on: its
//     own metrics, probe and API listeners, and a node's local services;
//   - link-local addresses hold cloud metadata services (169.254.169.254),
//     which hand out the node's cloud credentials;
//   - private ranges (RFC 1918, RFC 6598 shared space, IPv6 unique local)
//     are where clusters put pods, services and nodes, so a tenant's URL
//     there reaches other tenants' and the platform's internal endpoints;
//     AWS's IPv6 metadata endpoint (fd00:ec2::254) is unique local too;
//   - multicast and reserved ranges are never a legitimate destination.
var defaultDenied = []rangeRule{
	{netip.MustParsePrefix("0.0.0.0/8"), "an unspecified address (it reaches the local host)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback (Swell's own host and listeners)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (cloud metadata services answer there)"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private (RFC 1918: cluster pods, services and nodes)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private (RFC 1918: cluster pods, services and nodes)"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private (RFC 1918: cluster pods, services and nodes)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (RFC 6598: pod and node networks of some clusters)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("::/128"), "an unspecified address (it reaches the local host)"},
	{netip.MustParsePrefix("::1/128"), "loopback (Swell's own host and listeners)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local (cloud metadata services answer there)"},
	{netip.MustParsePrefix("fc00::/7"), "unique local (private IPv6: cluster networks, AWS's metadata service fd00:ec2::254)"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
	awsMetadataV6,
}

// privateRanges are the defaultDenied entries Config.AllowPrivate drops.
// AWS's IPv6 metadata endpoint (fd00:ec2::254) is in fc00::/7, so it is
// refused on its own below whatever AllowPrivate says.
var privateRanges = map[netip.Prefix]bool{
	netip.MustParsePrefix("10.0.0.0/8"):     true,
	netip.MustParsePrefix("172.16.0.0/12"):  true,
	netip.MustParsePrefix("192.168.0.0/16"): true,
	netip.MustParsePrefix("100.64.0.0/10"):  true,
	netip.MustParsePrefix("fc00::/7"):       true,
}

// awsMetadataV6 is AWS's IPv6 instance metadata address.
var awsMetadataV6 = rangeRule{netip.MustParsePrefix("fd00:ec2::254/128"), "a cloud metadata service (AWS IPv6)"}

// nat64 is the well-known NAT64 prefix: an address in it reaches the IPv4
// address in its last four bytes, so that address is checked too.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Config is what an operator sets; the flags of each command fill it.
type Config struct {
	// Allow lists destinations that are reachable although refused by
	// default: CIDRs ("10.20.0.0/16"), addresses ("10.0.0.5", any port),
	// and host:port ("10.0.0.5:6379", "[fd00::1]:443",
	// "prometheus.monitoring.svc:9090", the name as the user wrote it).
	Allow []string
	// Deny adds ranges (CIDRs) to refuse, for cluster-internal networks on
	// public addresses.
	Deny []string
	// APIServer lists the Kubernetes API server's addresses (URLs, host or
	// host:port); each resolved address is refused on every port. A range
	// in Allow does not re-open it: only an exact address or host:port does.
	APIServer []string
	// AllowFlag names the option that allows a destination, for refusals
	// (default --egress-allow).
	AllowFlag string
	// AllowPrivate leaves the private ranges (RFC 1918, RFC 6598, IPv6
	// unique local) out of the default refusals, for destinations that
	// normally live inside the cluster: the brokers a ScalerConfig names.
	// Loopback, link-local (cloud metadata), the API server and Deny stay
	// refused.
	AllowPrivate bool
	// Lookup resolves API server names (net.DefaultResolver when nil).
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// Policy decides whether an outbound call may connect to an address. A nil
// *Policy allows everything: it is the zero value for library callers and
// for `swell cpa`, whose configuration the operator writes.
type Policy struct {
	denied    []rangeRule
	allowNets []netip.Prefix
	allowIPs  map[netip.Addr]bool
	allowAP   map[netip.AddrPort]bool
	allowHost map[string]bool // lower-case "name:port"
	// apiserver holds API server addresses refused on every port unless an
	// exact entry allows them (the API server was named without a port).
	apiserver map[netip.Addr]bool
	// apiserverAP holds the API server's own address:port, refused unless
	// an exact entry allows it; apiserverHost holds the hosts behind them,
	// whose other ports are refused unless any allow entry (a range too)
	// covers them.
	apiserverAP   map[netip.AddrPort]bool
	apiserverHost map[netip.Addr]bool
	flag          string
}

// New builds a Policy: the default refused ranges plus cfg. An entry that
// does not parse is an error naming it, so a typo never widens or narrows
// the policy silently.
func New(ctx context.Context, cfg Config) (*Policy, error) {
	denied := append([]rangeRule(nil), defaultDenied...)
	if cfg.AllowPrivate {
		denied = slices.DeleteFunc(denied, func(r rangeRule) bool { return privateRanges[r.prefix] })
	}
	p := &Policy{
		denied:        denied,
		allowIPs:      map[netip.Addr]bool{},
		allowAP:       map[netip.AddrPort]bool{},
		allowHost:     map[string]bool{},
		apiserver:     map[netip.Addr]bool{},
		apiserverAP:   map[netip.AddrPort]bool{},
		apiserverHost: map[netip.Addr]bool{},
		flag:          cfg.AllowFlag,
	}
	if p.flag == "" {
		p.flag = DefaultAllowFlag
	}
	var errs []error
	for _, a := range cfg.Allow {
		errs = append(errs, p.addAllow(strings.TrimSpace(a)))
	}
	for _, d := range cfg.Deny {
		pr, err := netip.ParsePrefix(strings.TrimSpace(d))
		if err != nil {
			errs = append(errs, fmt.Errorf("egress deny %q: want a CIDR such as 203.0.113.0/24", d))
			continue
		}
		p.denied = append(p.denied, rangeRule{pr.Masked(), "a cluster-internal range named by the operator (egress deny list)"})
	}
	errs = append(errs, p.addAPIServer(ctx, cfg))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// addAllow parses one allow-list entry.
func (p *Policy) addAllow(a string) error {
	if a == "" {
		return nil
	}
	if pr, err := netip.ParsePrefix(a); err == nil {
		p.allowNets = append(p.allowNets, pr.Masked())
		return nil
	}
	if ip, err := netip.ParseAddr(a); err == nil {
		p.allowIPs[ip.Unmap()] = true
		return nil
	}
	if ap, err := netip.ParseAddrPort(a); err == nil {
		p.allowAP[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = true
		return nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("%s %q: want a CIDR (10.20.0.0/16), an address (10.0.0.5) or host:port (prometheus.monitoring.svc:9090)", p.flag, a)
	}
	p.allowHost[hostKey(host, port)] = true
	return nil
}

// addAPIServer resolves the API server's addresses.
func (p *Policy) addAPIServer(ctx context.Context, cfg Config) error {
	lookup := cfg.Lookup
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	var errs []error
	for _, s := range cfg.APIServer {
		host, port := hostPort(s)
		if host == "" {
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			p.addAPIServerAddr(ip, port)
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ips, err := lookup(lctx, host)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("egress: resolve the API server %q to refuse it: %w", host, err))
			continue
		}
		for _, ip := range ips {
			p.addAPIServerAddr(ip, port)
		}
	}
	return errors.Join(errs...)
}

// addAPIServerAddr records one API server address: with its port, that
// address:port is refused unless allowed exactly and the host's other ports
// are treated as a refused range; without a port, every port is refused
// unless allowed exactly.
func (p *Policy) addAPIServerAddr(ip netip.Addr, port uint16) {
	ip = ip.Unmap()
	if port == 0 {
		p.apiserver[ip] = true
		return
	}
	p.apiserverAP[netip.AddrPortFrom(ip, port)] = true
	p.apiserverHost[ip] = true
}

// hostPort takes the host and port out of a URL (its scheme's default port
// when none is written), host:port or a bare host (port 0: unknown).
func hostPort(s string) (string, uint16) {
	s = strings.TrimSpace(s)
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		port := u.Port()
		if port == "" {
			port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
		}
		return u.Hostname(), parsePort(port)
	}
	if h, port, err := net.SplitHostPort(s); err == nil {
		return h, parsePort(port)
	}
	return strings.Trim(s, "[]"), 0
}

// parsePort reads a port number; anything else is 0 (unknown).
func parsePort(s string) uint16 {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0
	}
	return uint16(n)
}

func hostKey(host, port string) string {
	return strings.ToLower(strings.TrimSuffix(host, ".")) + ":" + port
}

// RefusedError says which destination a policy refused and why. It names
// the address and the rule, never anything the destination would have
// answered.
type RefusedError struct {
	// Host is the name:port the call asked for ("" when the same as Addr).
	Host string
	// Addr is the address that would have been connected.
	Addr netip.AddrPort
	// Reason is what the address is ("link-local (…)").
	Reason string
	// Flag is the option that allows it.
	Flag string
}

func (e *RefusedError) Error() string {
	dest := e.Addr.String()
	if e.Host != "" && e.Host != dest {
		dest = e.Host + " (" + dest + ")"
	}
	return fmt.Sprintf("outbound call to %s refused: the address is %s; user-configured calls may not reach it unless the operator allows it with %s=%s",
		dest, e.Reason, e.Flag, e.Addr)
}

// Check decides one connection: host is the name:port asked for (may be
// empty), addr the resolved address being connected. Order: an exact
// allow-list entry (address, address:port, or the name:port asked for)
// allows anything, even the API server; then the API server is refused;
// then an allowed range allows; then a refused range refuses; the rest is
// allowed. A nil Policy allows everything.
func (p *Policy) Check(host string, addr netip.AddrPort) error {
	if p == nil {
		return nil
	}
	ip := addr.Addr().Unmap().WithZone("")
	ap := netip.AddrPortFrom(ip, addr.Port())
	if p.allowIPs[ip] || p.allowAP[ap] || (host != "" && p.allowHost[hostKeyOf(host)]) {
		return nil
	}
	refuse := func(why string) error { return &RefusedError{Host: host, Addr: ap, Reason: why, Flag: p.flag} }
	if p.apiserver[ip] || p.apiserverAP[ap] {
		return refuse("the Kubernetes API server (only an exact address or host:port in the allow list re-opens it)")
	}
	for _, n := range p.allowNets {
		if n.Contains(ip) {
			return nil
		}
	}
	if p.apiserverHost[ip] {
		return refuse("the Kubernetes API server's host (an allowed range or exact entry re-opens its other ports)")
	}
	if why := p.deniedReason(ip); why != "" {
		return refuse(why)
	}
	if nat64.Contains(ip) {
		b := ip.As16()
		v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		if why := p.deniedReason(v4); why != "" {
			return refuse("NAT64 for " + v4.String() + ", " + why)
		}
	}
	return nil
}

func (p *Policy) deniedReason(ip netip.Addr) string {
	for _, r := range p.denied {
		if r.prefix.Contains(ip) {
			return r.prefix.String() + ", " + r.why
		}
	}
	return ""
}

// hostKeyOf normalises a requested host:port for the allow list.
func hostKeyOf(hostport string) string {
	h, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return strings.ToLower(hostport)
	}
	return hostKey(h, port)
}
