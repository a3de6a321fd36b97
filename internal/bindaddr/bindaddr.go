// Package bindaddr answers one question for every Swell listener: does a
// listen address keep the socket on this host (loopback), or can other
// hosts reach it? Listeners use it to pick their defaults, to decide when
// authentication is required and to warn when a plaintext or
// unauthenticated server is reachable from the network.
package bindaddr

import (
	"net"
	"strings"
)

// IsLoopback reports whether a listen address ("host:port") binds only
// loopback interfaces. An empty host, 0.0.0.0 and :: bind every interface;
// a host name other than localhost is treated as reachable, since it may
// resolve to any interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Disabled reports whether an address turns its listener off, as Swell's
// flags spell it: empty or "0".
func Disabled(addr string) bool { return addr == "" || addr == "0" }
