package externalscaler

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/swell-autoscaler/swell/pkg/credbind"
	"github.com/swell-autoscaler/swell/pkg/egress"
)

// Credentials from the secrets directory are bound to their destination.
//
// The server's secrets directory holds credentials the operator mounted
// for particular brokers. A ScaledObject names one by its file name
// (`passwordFile: redis-password`), but the address it pairs it with is the
// ScaledObject author's, so without a binding anyone who can write a
// ScaledObject (or reach the gRPC port) could have the server send the
// credential to a host of their choosing. Each credential is therefore
// declared with the addresses it may be sent to (--credential
// NAME=HOST:PORT[,HOST:PORT...]); a request pairing it with any other
// address is refused with PermissionDenied and logged without the secret.
// `<key>FromEnv` credentials are not bound: KEDA reads them from the scale
// target's own containers, so they are the ScaledObject author's to send.

// Bindings maps a credential's name (its path under the secrets directory)
// to the addresses (host:port) it may be sent to.
type Bindings map[string][]string

// ParseBinding parses one --credential value, NAME=HOST:PORT[,HOST:PORT].
func ParseBinding(b Bindings, v string) error {
	name, addrs, ok := strings.Cut(v, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return fmt.Errorf("--credential %q: want NAME=HOST:PORT[,HOST:PORT...] (NAME is a file under --secrets-dir)", v)
	}
	for _, a := range strings.Split(addrs, ",") {
		a = strings.TrimSpace(a)
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return fmt.Errorf("--credential %s: %q is not host:port", name, a)
		}
		b[name] = append(b[name], credbind.Normalize(a))
	}
	return nil
}

// BindingError is a request pairing a credential with an address the
// operator did not declare for it. It names both, never the credential's
// value.
type BindingError struct {
	Credential string
	Address    string
	Allowed    []string
}

func (e *BindingError) Error() string {
	allowed := "no address (declare it with --credential " + e.Credential + "=HOST:PORT)"
	if len(e.Allowed) > 0 {
		allowed = strings.Join(e.Allowed, ", ")
	}
	return fmt.Sprintf("credential %q may not be sent to %s: the operator declared it for %s", e.Credential, e.Address, allowed)
}

// checkBindings refuses the spec when a secrets-directory credential it
// uses would be sent to an address not declared for it.
func checkBindings(b Bindings, used []string, dests []string) error {
	for _, name := range used {
		allowed := b[name]
		for _, d := range dests {
			if !credbind.Allowed(allowed, d) {
				sorted := append([]string(nil), allowed...)
				sort.Strings(sorted)
				return &BindingError{Credential: name, Address: d, Allowed: sorted}
			}
		}
	}
	return nil
}

// boundRedirect is the CheckRedirect of a client carrying the
// secrets-directory credentials names: egress.CheckRedirect (a cap, and no
// credential off the first origin), and a redirect to an address not
// declared for every one of them is refused with a *BindingError, so a
// destination cannot hand the request on to an address the operator did
// not bind the credential to.
func boundRedirect(b Bindings, names []string) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if err := egress.CheckRedirect(req, via); err != nil {
			return err
		}
		return checkBindings(b, names, []string{urlDest(req.URL.String(), httpPorts)})
	}
}

// urlDest is a URL's host:port, with the scheme's default port.
func urlDest(raw string, defaultPorts map[string]string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return raw
	}
	if u.Port() != "" {
		return net.JoinHostPort(u.Hostname(), u.Port())
	}
	return net.JoinHostPort(u.Hostname(), defaultPorts[u.Scheme])
}

var (
	httpPorts = map[string]string{"http": "80", "https": "443"}
	amqpPorts = map[string]string{"amqp": "5672", "amqps": "5671"}
	natsPorts = map[string]string{"nats": "4222", "tls": "4222", "": "4222"}
)
