// Package brokerconn holds the connection pieces every broker source shares:
// TLS options turned into a *tls.Config the same way for every broker, and a
// Secret string type that never prints, so a credential cannot reach a log
// line or an error message through %v of a Config.
package brokerconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
)

// DialFunc opens a connection: the shape of net.Dialer.DialContext, which
// the egress policy's dialer has, so a source can be told how to connect.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// WithTLS returns a dial function that dials with dial and, when cfg is not
// nil, runs a TLS handshake over the connection (for clients whose own TLS
// is bypassed by a custom dialer). An empty ServerName becomes the host
// dialled.
func WithTLS(dial DialFunc, cfg *tls.Config) DialFunc {
	if cfg == nil {
		return dial
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		conn, err := dial(ctx, network, address)
		if err != nil {
			return nil, err
		}
		c := cfg.Clone()
		if c.ServerName == "" {
			if host, _, err := net.SplitHostPort(address); err == nil {
				c.ServerName = host
			}
		}
		tc := tls.Client(conn, c)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, err
		}
		return tc, nil
	}
}

// Redacted is what a Secret prints as.
const Redacted = "[redacted]"

// Secret is a credential (a password, a private key). It prints as
// [redacted] with every fmt verb and in JSON, so a Config can be logged
// whole; Reveal returns the value for the one place that needs it.
type Secret string

// String hides the value from %s and %v.
func (Secret) String() string { return Redacted }

// GoString hides the value from %#v.
func (Secret) GoString() string { return `"` + Redacted + `"` }

// MarshalText hides the value from encoders (JSON, YAML).
func (Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// Reveal returns the credential itself.
func (s Secret) Reveal() string { return string(s) }

// TLS configures a broker connection's TLS. The controller fills it from
// the ScalerConfig's Secrets; the zero value means plain TCP.
type TLS struct {
	// Enabled turns TLS on. Every other field needs it.
	Enabled bool
	// CAPEM is the PEM bundle that signs the broker's certificate. Empty:
	// the system roots.
	CAPEM []byte
	// CertPEM and KeyPEM are a client certificate for mutual TLS; set both
	// or neither.
	CertPEM []byte
	KeyPEM  Secret
	// ServerName overrides the name checked in the broker's certificate
	// (default: the host dialled).
	ServerName string
	// InsecureSkipVerify accepts any certificate. For tests only: it makes
	// TLS worthless against an active attacker.
	InsecureSkipVerify bool
}

// Validate checks the options; field is the prefix naming them in messages
// (e.g. "tls").
func (t TLS) Validate(field string) error {
	if !t.Enabled {
		if len(t.CAPEM) > 0 || len(t.CertPEM) > 0 || t.KeyPEM != "" || t.ServerName != "" || t.InsecureSkipVerify {
			return fmt.Errorf("%s: options are set but %s.enabled is false; enable TLS or drop them", field, field)
		}
		return nil
	}
	_, err := t.Config("")
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}

// Config builds the *tls.Config, or nil when TLS is off. serverName is the
// host dialled, used when ServerName is empty.
func (t TLS) Config(serverName string) (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         serverName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // explicit opt-in, documented as tests only
	}
	if t.ServerName != "" {
		cfg.ServerName = t.ServerName
	}
	if len(t.CAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(t.CAPEM) {
			return nil, errors.New("caPEM holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	if (len(t.CertPEM) > 0) != (t.KeyPEM != "") {
		return nil, errors.New("certPEM and keyPEM must be set together (client certificate and its key)")
	}
	if len(t.CertPEM) > 0 {
		pair, err := tls.X509KeyPair(t.CertPEM, []byte(t.KeyPEM.Reveal()))
		if err != nil {
			// The parse error names no key material, only what failed.
			return nil, fmt.Errorf("certPEM/keyPEM: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
