package brokersource

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
)

// TestBrokerAddresses: every address a broker connection sends credentials
// to, with each broker's default port.
func TestBrokerAddresses(t *testing.T) {
	tlsOn := &qv1.TLS{Enabled: true}
	cases := []struct {
		name string
		typ  qv1.BrokerType
		c    qv1.ScalerConnection
		want []string
	}{
		{name: "redis default port", typ: qv1.BrokerRedis, c: qv1.ScalerConnection{Host: "redis.jobs.svc"}, want: []string{"redis.jobs.svc:6379"}},
		{name: "redis port", typ: qv1.BrokerRedis, c: qv1.ScalerConnection{Host: "redis", Port: "6380"}, want: []string{"redis:6380"}},
		{name: "redis bad port", typ: qv1.BrokerRedis, c: qv1.ScalerConnection{Host: "redis", Port: "x"}, want: nil},
		{name: "rabbitmq host", typ: qv1.BrokerRabbitMQ, c: qv1.ScalerConnection{Host: "rmq"}, want: []string{"rmq:5672"}},
		{name: "rabbitmq host tls", typ: qv1.BrokerRabbitMQ, c: qv1.ScalerConnection{Host: "rmq", TLS: tlsOn}, want: []string{"rmq:5671"}},
		{name: "rabbitmq url and management", typ: qv1.BrokerRabbitMQ,
			c:    qv1.ScalerConnection{URL: "amqps://rmq.jobs/vh", ManagementURL: "http://rmq-admin.jobs:15672/api"},
			want: []string{"rmq.jobs:5671", "rmq-admin.jobs:15672"}},
		{name: "rabbitmq management default port", typ: qv1.BrokerRabbitMQ,
			c:    qv1.ScalerConnection{URL: "amqp://rmq:5673", ManagementURL: "https://rmq-admin"},
			want: []string{"rmq:5673", "rmq-admin:443"}},
		{name: "nats host", typ: qv1.BrokerNATS, c: qv1.ScalerConnection{Host: "nats"}, want: []string{"nats:4222"}},
		{name: "nats host and a port below 4222", typ: qv1.BrokerNATS, c: qv1.ScalerConnection{Host: "nats", Port: "4000"}, want: []string{"nats:4000"}},
		{name: "nats urls", typ: qv1.BrokerNATS, c: qv1.ScalerConnection{URL: "nats://a:4223, tls://b"}, want: []string{"a:4223", "b:4222"}},
		{name: "kafka brokers", typ: qv1.BrokerKafka, c: qv1.ScalerConnection{Brokers: []string{"k0:9092", "k1:9092"}}, want: []string{"k0:9092", "k1:9092"}},
		{name: "unknown type", typ: "sqs", c: qv1.ScalerConnection{Host: "x"}, want: nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc := &qv1.ScalerConfig{Spec: qv1.ScalerConfigSpec{Type: tc.typ, Config: tc.c}}
			if got := brokerAddresses(sc); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("brokerAddresses = %q, want %q", got, tc.want)
			}
		})
	}
}

// recordingDial records every address dialed and connects nowhere.
type recordingDial struct {
	mu    sync.Mutex
	addrs []string
}

var errNoNetwork = errors.New("test dialer: no network")

func (d *recordingDial) dial(_ context.Context, _, address string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addrs = append(d.addrs, address)
	return nil, errNoNetwork
}

func (d *recordingDial) dialed() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.addrs...)
}

// TestSecretAddressBinding, through Ping (the ScalerConfig's Reachable
// path): a Secret with swell.dev/allowed-addresses is sent only to a
// matching broker address, anything else is refused before any dial with
// an error naming the field, the Secret, the address and the annotation,
// never the value; a Secret without it works unless
// RequireSecretAddresses.
func TestSecretAddressBinding(t *testing.T) {
	const value = "s3cr3t-value"
	secret := func(name, annotation string, withAnnotation bool) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: name},
			Data: map[string][]byte{"password": []byte(value), "tls.crt": []byte("crt"), "tls.key": []byte(value), "ca.crt": []byte("ca")}}
		if withAnnotation {
			s.Annotations = map[string]string{AllowedAddressesAnnotation: annotation}
		}
		return s
	}
	passwordFrom := func(name string) *qv1.Password {
		return &qv1.Password{Secret: &qv1.SecretKey{Name: name, Key: "password"}}
	}
	cases := []struct {
		name     string
		secret   *corev1.Secret
		typ      qv1.BrokerType
		conn     qv1.ScalerConnection
		require  bool
		wantErr  []string // substrings of the refusal; nil: not refused
		wantDial string   // dialed when not refused ("": not checked)
	}{
		{name: "annotated, matching host:port", secret: secret("creds", "redis.tenant.svc:6379", true), typ: qv1.BrokerRedis,
			conn: qv1.ScalerConnection{Host: "redis.tenant.svc", Password: passwordFrom("creds")}, wantDial: "redis.tenant.svc:6379"},
		{name: "annotated, bare host any port", secret: secret("creds", "redis.tenant.svc", true), typ: qv1.BrokerRedis,
			conn: qv1.ScalerConnection{Host: "redis.tenant.svc", Port: "16379", Password: passwordFrom("creds")}, wantDial: "redis.tenant.svc:16379"},
		{name: "annotated, other host", secret: secret("creds", "redis.tenant.svc:6379", true), typ: qv1.BrokerRedis,
			conn:    qv1.ScalerConnection{Host: "attacker.example", Password: passwordFrom("creds")},
			wantErr: []string{"spec.config.password.secret", "Secret tenant/creds", "attacker.example:6379", AllowedAddressesAnnotation}},
		{name: "annotated, other port", secret: secret("creds", "redis.tenant.svc:6379", true), typ: qv1.BrokerRedis,
			conn:    qv1.ScalerConnection{Host: "redis.tenant.svc", Port: "6380", Password: passwordFrom("creds")},
			wantErr: []string{"redis.tenant.svc:6380", AllowedAddressesAnnotation}},
		{name: "annotated, legacy valueFrom field", secret: secret("creds", "redis.tenant.svc:6379", true), typ: qv1.BrokerRedis,
			conn: qv1.ScalerConnection{Host: "attacker.example", Password: &qv1.Password{ValueFrom: &qv1.ValueFrom{
				SecretKeyRef: qv1.SecretKey{Name: "creds", Key: "password"}}}},
			wantErr: []string{"spec.config.password.valueFrom.secretKeyRef", "attacker.example:6379"}},
		{name: "annotated, kafka one broker outside", secret: secret("creds", "k0.tenant:9092,k1.tenant:9092", true), typ: qv1.BrokerKafka,
			conn:    qv1.ScalerConnection{Brokers: []string{"k0.tenant:9092", "attacker.example:9092"}, Username: "u", SASLMechanism: "PLAIN", Password: passwordFrom("creds")},
			wantErr: []string{"attacker.example:9092"}},
		{name: "annotated, rabbitmq management API outside", secret: secret("creds", "rmq.tenant:5672", true), typ: qv1.BrokerRabbitMQ,
			conn:    qv1.ScalerConnection{Host: "rmq.tenant", Username: "u", ManagementURL: "http://attacker.example:15672", Password: passwordFrom("creds")},
			wantErr: []string{"attacker.example:15672"}},
		{name: "annotated, client certificate elsewhere", secret: secret("cert", "redis.tenant.svc:6379", true), typ: qv1.BrokerRedis,
			conn:    qv1.ScalerConnection{Host: "attacker.example", TLS: &qv1.TLS{Enabled: true, CertSecret: "cert"}},
			wantErr: []string{"spec.config.tls.certSecret", "Secret tenant/cert", "attacker.example:6379"}},
		{name: "annotated, malformed", secret: secret("creds", "redis:", true), typ: qv1.BrokerRedis,
			conn:    qv1.ScalerConnection{Host: "redis", Password: passwordFrom("creds")},
			wantErr: []string{"spec.config.password.secret", "Secret tenant/creds", AllowedAddressesAnnotation}},
		{name: "annotated empty", secret: secret("creds", "", true), typ: qv1.BrokerRedis,
			conn:    qv1.ScalerConnection{Host: "redis", Password: passwordFrom("creds")},
			wantErr: []string{AllowedAddressesAnnotation}},
		{name: "no annotation, default", secret: secret("creds", "", false), typ: qv1.BrokerRedis,
			conn: qv1.ScalerConnection{Host: "anywhere.example", Password: passwordFrom("creds")}, wantDial: "anywhere.example:6379"},
		{name: "no annotation, required", secret: secret("creds", "", false), typ: qv1.BrokerRedis, require: true,
			conn:    qv1.ScalerConnection{Host: "redis", Password: passwordFrom("creds")},
			wantErr: []string{"spec.config.password.secret", "Secret tenant/creds", "has no " + AllowedAddressesAnnotation, "--require-secret-addresses"}},
		{name: "annotated, required, matching", secret: secret("creds", "redis:6379", true), typ: qv1.BrokerRedis, require: true,
			conn: qv1.ScalerConnection{Host: "redis", Password: passwordFrom("creds")}, wantDial: "redis:6379"},
		{name: "required, CA certificate is not a credential", secret: secret("ca", "", false), typ: qv1.BrokerRedis, require: true,
			conn: qv1.ScalerConnection{Host: "redis", TLS: &qv1.TLS{Enabled: true, CASecret: "ca"}}},
		{name: "required, inline password needs no Secret", secret: secret("unused", "", false), typ: qv1.BrokerRedis, require: true,
			conn: qv1.ScalerConnection{Host: "redis", Password: &qv1.Password{Value: "inline"}}, wantDial: "redis:6379"},
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = qv1.AddToScheme(scheme)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.secret).Build()
			d := &recordingDial{}
			s := NewSources(c, c)
			s.Dial, s.RequireSecretAddresses = d.dial, tc.require
			sc := &qv1.ScalerConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: "sc"},
				Spec: qv1.ScalerConfigSpec{Type: tc.typ, Config: tc.conn}}
			err := s.Ping(context.Background(), sc)
			if err == nil {
				t.Fatal("Ping succeeded with no network")
			}
			var be *SecretBindingError
			if tc.wantErr == nil {
				if errors.As(err, &be) {
					t.Fatalf("refused: %v", err)
				}
				if tc.wantDial != "" {
					assertDialed(t, d.dialed(), tc.wantDial)
				}
				return
			}
			if !errors.As(err, &be) {
				t.Fatalf("Ping error %v, want a *SecretBindingError", err)
			}
			if got := d.dialed(); len(got) != 0 {
				t.Errorf("dialed %q before refusing", got)
			}
			shown := Describe(err)
			for _, w := range tc.wantErr {
				if !strings.Contains(shown, w) {
					t.Errorf("status message %q does not name %q", shown, w)
				}
			}
			if strings.Contains(shown, value) {
				t.Errorf("status message %q carries the Secret's value", shown)
			}
		})
	}
}

// assertDialed fails unless want was among the addresses dialed.
func assertDialed(t *testing.T, dialed []string, want string) {
	t.Helper()
	for _, a := range dialed {
		if a == want {
			return
		}
	}
	t.Errorf("dialed %q, want %s among them", dialed, want)
}
