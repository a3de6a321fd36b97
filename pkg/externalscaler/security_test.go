package externalscaler_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/swell-autoscaler/swell/pkg/egress"
	"github.com/swell-autoscaler/swell/pkg/externalscaler"
	pb "github.com/swell-autoscaler/swell/pkg/externalscaler/proto"
	"github.com/swell-autoscaler/swell/pkg/externalscaler/scalertest"
)

const password = "s3cret-redis-password"

// listener accepts TCP connections on addr and counts them and the bytes
// they send, standing in for a host that must never be contacted.
type listener struct {
	net.Listener
	conns atomic.Int32
	bytes atomic.Int64
}

func listen(t *testing.T, addr string) *listener {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	l := &listener{Listener: lis}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			l.conns.Add(1)
			go func() {
				defer func() { _ = c.Close() }()
				buf := make([]byte, 512)
				for {
					n, err := c.Read(buf)
					l.bytes.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { _ = lis.Close() })
	return l
}

// secretsDir holds one credential file, redis-password.
func secretsDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "redis-password"), []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestCredentialRedirectRefused: a request pairing a secrets-directory
// credential with an address the operator did not declare for it is
// refused with PermissionDenied, logged without the secret, and the
// attacker's listener receives no connection; an undeclared credential is
// never read.
func TestCredentialRedirectRefused(t *testing.T) {
	attacker := listen(t, "127.0.0.1:0")
	var logs bytes.Buffer
	parser := &externalscaler.Parser{Files: externalscaler.SecretFiles{
		Dir:      secretsDir(t),
		Bindings: externalscaler.Bindings{"redis-password": {"redis.queues.svc:6379"}},
	}}
	h := scalertest.Start(t, scalertest.Options{Parser: parser, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	cases := []struct {
		name string
		md   map[string]string
		code codes.Code
		want string
	}{
		{"redis at the attacker", map[string]string{"source": "redis", "address": attacker.Addr().String(), "listName": "q", "passwordFile": "redis-password"},
			codes.PermissionDenied, `credential "redis-password" may not be sent to ` + attacker.Addr().String() + `: the operator declared it for redis.queues.svc:6379`},
		{"http bearer token at the attacker", map[string]string{"source": "http", "url": "http://" + attacker.Addr().String() + "/x", "valueLocation": "a", "bearerTokenFile": "redis-password"},
			codes.PermissionDenied, "may not be sent to " + attacker.Addr().String()},
		{"rabbitmq management URL at the attacker", map[string]string{"source": "rabbitmq", "host": "redis.queues.svc", "port": "6379", "queueName": "q", "username": "u", "passwordFile": "redis-password", "managementURL": "http://" + attacker.Addr().String()},
			codes.PermissionDenied, "may not be sent to " + attacker.Addr().String()},
		{"undeclared credential", map[string]string{"source": "redis", "address": attacker.Addr().String(), "listName": "q", "passwordFile": "other"},
			codes.InvalidArgument, `credential "other" is not declared with its broker address (start the server with --credential other=HOST:PORT)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := h.Client.GetMetricSpec(context.Background(), &pb.ScaledObjectRef{Name: "evil", Namespace: "tenant", ScalerMetadata: c.md})
			wantCode(t, err, c.code, c.want)
			if strings.Contains(err.Error(), password) {
				t.Fatalf("the refusal carries the secret: %v", err)
			}
		})
	}
	// Nothing was dialled: the refusal comes before any connection.
	time.Sleep(200 * time.Millisecond)
	if n := attacker.conns.Load(); n != 0 {
		t.Fatalf("the attacker's listener received %d connections", n)
	}
	if !strings.Contains(logs.String(), "refused: a credential paired with an address not declared for it") || !strings.Contains(logs.String(), "credential=redis-password") {
		t.Fatalf("the refusal is not logged with the credential's name:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), password) {
		t.Fatalf("the log carries the secret:\n%s", logs.String())
	}
	// The declared address is accepted (the spec parses; measuring it is
	// the tracker's business).
	ok := map[string]string{"source": "redis", "address": "Redis.Queues.svc.:6379", "listName": "q", "passwordFile": "redis-password"}
	if _, err := parser.Parse(ok); err != nil {
		t.Fatalf("declared address refused: %v", err)
	}
}

// TestBindingAddressesOfEverySource: each source's credential goes to
// every address it names, and each must be declared.
func TestBindingAddressesOfEverySource(t *testing.T) {
	dir := secretsDir(t)
	b := externalscaler.Bindings{}
	for _, v := range []string{"redis-password=r:6379,amqp:5672,mgmt:15672,n1:4222,n2:4223,burrow:80,k1:9092,k2:9092,prom:443"} {
		if err := externalscaler.ParseBinding(b, v); err != nil {
			t.Fatal(err)
		}
	}
	p := &externalscaler.Parser{Files: externalscaler.SecretFiles{Dir: dir, Bindings: b}}
	good := []map[string]string{
		{"source": "redis", "host": "r", "listName": "q", "passwordFile": "redis-password"},
		{"source": "rabbitmq", "url": "amqp://amqp", "queueName": "q", "passwordFile": "redis-password", "username": "u", "managementURL": "http://mgmt:15672"},
		{"source": "nats", "natsURL": "nats://n1, nats://n2:4223", "stream": "s", "consumer": "c", "username": "u", "passwordFile": "redis-password"},
		{"source": "burrow", "burrowURL": "http://burrow", "cluster": "c", "consumerGroup": "g", "username": "u", "passwordFile": "redis-password"},
		{"source": "kafka", "bootstrapServers": "k1:9092,k2:9092", "consumerGroup": "g", "sasl": "plaintext", "username": "u", "passwordFile": "redis-password"},
		{"source": "prometheus", "serverAddress": "https://prom", "query": "q", "bearerTokenFile": "redis-password"},
	}
	for _, md := range good {
		if _, err := p.Parse(md); err != nil {
			t.Errorf("%s with declared addresses: %v", md["source"], err)
		}
	}
	bad := []map[string]string{
		{"source": "redis", "host": "r", "port": "6380", "listName": "q", "passwordFile": "redis-password"},
		{"source": "rabbitmq", "url": "amqps://amqp", "queueName": "q", "passwordFile": "redis-password", "username": "u"},
		{"source": "nats", "natsURL": "nats://n1,nats://evil:4222", "stream": "s", "consumer": "c", "username": "u", "passwordFile": "redis-password"},
		{"source": "kafka", "bootstrapServers": "k1:9092,evil:9092", "consumerGroup": "g", "sasl": "plaintext", "username": "u", "passwordFile": "redis-password"},
		{"source": "prometheus", "serverAddress": "http://prom", "query": "q", "bearerTokenFile": "redis-password"},
	}
	for _, md := range bad {
		var be *externalscaler.BindingError
		if _, err := p.Parse(md); !asBinding(err, &be) {
			t.Errorf("%s with an undeclared address: %v, want a BindingError", md["source"], err)
		}
	}
	for _, v := range []string{"noaddr", "=r:1", "x=r"} {
		if err := externalscaler.ParseBinding(externalscaler.Bindings{}, v); err == nil {
			t.Errorf("ParseBinding(%q) accepted", v)
		}
	}
}

func asBinding(err error, be **externalscaler.BindingError) bool {
	if err == nil {
		return false
	}
	return strings.Contains(err.Error(), "may not be sent to")
}

// TestEgressPolicyRefusesMetadataAddresses: with the operator's policy,
// an http source and a redis address on a refused address are never
// contacted; the value is Unavailable (no fake zero) and the error names
// the refusal and the flag.
func TestEgressPolicyRefusesMetadataAddresses(t *testing.T) {
	internal := listen(t, "127.0.0.2:0")
	allowed := newJSONServer(t, `{"queue": {"depth": 4}}`)
	policy, err := egress.New(context.Background(), egress.Config{Allow: []string{"127.0.0.1/32"}})
	if err != nil {
		t.Fatal(err)
	}
	h := scalertest.Start(t, scalertest.Options{
		Parser:  &externalscaler.Parser{Egress: policy},
		Tracker: externalscaler.TrackerOptions{Interval: 50 * time.Millisecond, MaxFailures: 1},
	})
	for _, md := range []map[string]string{
		{"source": "http", "url": "http://" + internal.Addr().String() + "/latest/meta-data", "valueLocation": "a"},
		{"source": "prometheus", "serverAddress": "http://" + internal.Addr().String(), "query": "up"},
		{"source": "redis", "address": internal.Addr().String(), "listName": "q"},
	} {
		ref := &pb.ScaledObjectRef{Name: "w", Namespace: "tenant", ScalerMetadata: md}
		spec, err := h.Client.GetMetricSpec(context.Background(), ref)
		if err != nil {
			t.Fatalf("%s: GetMetricSpec: %v", md["source"], err)
		}
		_, err = h.Client.GetMetrics(context.Background(), &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: spec.MetricSpecs[0].MetricName})
		wantCode(t, err, codes.Unavailable, "refused")
		if !strings.Contains(err.Error(), "--egress-allow") {
			t.Fatalf("%s: %v, want the refusal to name --egress-allow", md["source"], err)
		}
	}
	if n := internal.conns.Load(); n != 0 {
		t.Fatalf("the internal listener received %d connections", n)
	}
	// An allowed address still works under the same policy.
	ref := httpRef(allowed.URL)
	eventually(t, 5*time.Second, func() error {
		_, err := h.Client.GetMetrics(context.Background(), &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: "depth"})
		return err
	})
}
