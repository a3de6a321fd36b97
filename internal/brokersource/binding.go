package brokersource

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/credbind"
)

// A Secret's owner says where its values may be sent.
//
// Whoever may write a ScalerConfig chooses its broker address, and may name
// any Secret of the namespace as its password, though they may not be
// allowed to read that Secret: without a binding, Swell would read the
// Secret for them and send its value to their own server (Redis AUTH, SASL,
// AMQP PLAIN, the RabbitMQ management API's basic auth). So a Secret may
// carry AllowedAddressesAnnotation, the broker addresses its values may be
// sent to, and a ScalerConfig pairing it with any other address is refused
// before anything is dialed. Secrets without the annotation keep working
// unless RequireSecretAddresses, which refuses them.

// AllowedAddressesAnnotation is the Secret annotation listing the broker
// addresses ("host:port[,host:port...]"; a host without a port is any port
// on it) that the Secret's values may be sent to as ScalerConfig
// credentials.
const AllowedAddressesAnnotation = "swell.dev/allowed-addresses"

// SecretBindingError is a ScalerConfig pairing a Secret's credential with
// a broker address the Secret does not allow, or, under
// RequireSecretAddresses, naming a Secret that declares no address. It
// names the field, the Secret, the address and the annotation, never the
// value.
type SecretBindingError struct {
	// Field is the ScalerConfig field naming the Secret.
	Field string
	// Secret is the Secret's namespace/name.
	Secret string
	// Address is the broker address refused ("" when the annotation is
	// missing or malformed).
	Address string
	// Reason says what is wrong when Address is "".
	Reason string
}

func (e *SecretBindingError) Error() string {
	if e.Address != "" {
		return fmt.Sprintf("%s: Secret %s may not be sent to %s: its %s annotation does not list that address",
			e.Field, e.Secret, e.Address, AllowedAddressesAnnotation)
	}
	return fmt.Sprintf("%s: Secret %s: %s", e.Field, e.Secret, e.Reason)
}

// binding is what a credential Secret is checked against: the addresses
// the ScalerConfig's broker connection sends credentials to, and whether a
// Secret without the annotation is refused.
type binding struct {
	dests   []string
	require bool
}

// check refuses secret (namespace/name), read for field, unless its
// annotation allows every destination; a Secret without the annotation
// passes unless b.require.
func (b binding) check(secret *corev1.Secret, name, field string) error {
	raw, ok := secret.Annotations[AllowedAddressesAnnotation]
	if !ok {
		if !b.require {
			return nil
		}
		return &SecretBindingError{Field: field, Secret: name, Reason: fmt.Sprintf(
			"has no %s annotation, and the controller requires one (--require-secret-addresses): add it to the Secret with the broker addresses (host:port[,host:port...]) its values may be sent to",
			AllowedAddressesAnnotation)}
	}
	allowed, err := credbind.ParseList(raw)
	if err != nil {
		return &SecretBindingError{Field: field, Secret: name, Reason: fmt.Sprintf("annotation %s: %v", AllowedAddressesAnnotation, err)}
	}
	for _, d := range b.dests {
		if !credbind.Allowed(allowed, d) {
			return &SecretBindingError{Field: field, Secret: name, Address: d}
		}
	}
	return nil
}

// brokerAddresses are the addresses (host:port) sc's broker connection
// sends its credentials to, with each broker's default port: Redis's host,
// RabbitMQ's AMQP address and management API, every NATS server URL, every
// Kafka bootstrap broker. A URL that does not parse is kept as written, so
// it matches no annotation. An invalid port or type has none: dial refuses
// those before connecting anywhere.
func brokerAddresses(sc *qv1.ScalerConfig) []string {
	c := sc.Spec.Config
	port, err := portNumber(c.Port)
	if err != nil {
		return nil
	}
	switch sc.Spec.Type {
	case qv1.BrokerRedis:
		return []string{hostPort(c.Host, port, 6379)}
	case qv1.BrokerRabbitMQ:
		return rabbitmqAddresses(c, port)
	case qv1.BrokerNATS:
		return urlAddresses(natsURL(c, port), map[string]string{"nats": "4222", "tls": "4222", "": "4222"})
	case qv1.BrokerKafka:
		return append([]string(nil), c.Brokers...)
	default:
		return nil
	}
}

// rabbitmqAddresses are the AMQP address (URL, or host and port with 5672,
// 5671 under TLS) and the management API's, when set.
func rabbitmqAddresses(c qv1.ScalerConnection, port int) []string {
	var out []string
	if c.URL != "" {
		out = urlAddresses(c.URL, map[string]string{"amqp": "5672", "amqps": "5671"})
	} else {
		def := 5672
		if c.TLS != nil && c.TLS.Enabled {
			def = 5671
		}
		out = []string{hostPort(c.Host, port, def)}
	}
	if c.ManagementURL != "" {
		out = append(out, urlAddresses(c.ManagementURL, map[string]string{"http": "80", "https": "443"})...)
	}
	return out
}

// natsURL is the server list dialed: spec.config.url, or one URL from
// host and port.
func natsURL(c qv1.ScalerConnection, port int) string {
	if c.URL != "" {
		return c.URL
	}
	if port == 0 {
		port = 4222 // NATS's own default when spec.config.port is unset
	}
	return "nats://" + net.JoinHostPort(c.Host, strconv.Itoa(port))
}

// urlAddresses is the host:port of each comma-separated URL in raw, with
// the scheme's default port.
func urlAddresses(raw string, defaultPorts map[string]string) []string {
	var out []string
	for _, s := range strings.Split(raw, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			out = append(out, s)
			continue
		}
		p := u.Port()
		if p == "" {
			p = defaultPorts[strings.ToLower(u.Scheme)]
		}
		out = append(out, net.JoinHostPort(u.Hostname(), p))
	}
	return out
}

// hostPort joins host with port, or def when port is 0.
func hostPort(host string, port, def int) string {
	if port == 0 {
		port = def
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}
