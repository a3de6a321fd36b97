// Package credbind matches the address a credential is about to be sent to
// against the addresses its owner bound it to.
//
// Swell sends credentials to addresses that users name (a ScalerConfig's
// broker host, an external-scaler request's address). Whoever may name the
// address is often not whoever owns the credential, so the owner declares
// where it may go and every sender checks the destination here first: the
// external scaler for its --credential bindings, the controller for the
// swell.dev/allowed-addresses annotation of a Secret.
package credbind

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Normalize is the form addresses are compared in: the host lower-cased,
// without brackets or a trailing dot, and the port as given ("host:port",
// or "host" when there is no port).
func Normalize(addr string) string {
	addr = strings.TrimSpace(addr)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return normHost(addr)
	}
	return net.JoinHostPort(normHost(host), port)
}

// normHost lower-cases host and drops brackets and a trailing dot.
func normHost(host string) string {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// Allowed reports whether dest (host:port) matches an entry of allowed: an
// entry "host:port" matches that host on that port only, an entry "host"
// matches that host on any port. Hosts compare as Normalize writes them;
// names are not resolved, so a name and its address are different hosts.
func Allowed(allowed []string, dest string) bool {
	d := Normalize(dest)
	dHost, _, err := net.SplitHostPort(d)
	if err != nil {
		dHost = d
	}
	for _, a := range allowed {
		a = Normalize(a)
		if a == d {
			return true
		}
		if _, _, err := net.SplitHostPort(a); err != nil && a == dHost {
			return true
		}
	}
	return false
}

// ParseList parses a comma-separated list of addresses
// ("host:port[,host[:port]...]"), as an owner writes where a credential may
// go. Every entry needs a host; a port, when given, is a number in 1-65535.
// The entries come back normalized.
func ParseList(s string) ([]string, error) {
	var out []string
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if err := checkEntry(e); err != nil {
			return nil, err
		}
		out = append(out, Normalize(e))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no address: want host:port[,host:port...]")
	}
	return out, nil
}

// checkEntry refuses an entry that is not host or host:port.
func checkEntry(e string) error {
	host, port, err := net.SplitHostPort(e)
	if err != nil {
		host = e
		if strings.Count(e, ":") == 1 {
			return fmt.Errorf("%q is not host or host:port", e)
		}
	} else if p, perr := strconv.Atoi(port); perr != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: port %q is not a number in 1-65535", e, port)
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" || strings.ContainsAny(host, "/@ \t") || (strings.Contains(host, ":") && net.ParseIP(host) == nil) {
		return fmt.Errorf("%q is not host or host:port", e)
	}
	return nil
}
