package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/common/expfmt"
	amqp "github.com/rabbitmq/amqp091-go"
	goredis "github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/cpa"
	pb "github.com/swell-autoscaler/swell/pkg/externalscaler/proto"
)

// leakPrefix starts every credential this test makes; no object name uses
// it, so any occurrence in an output is part of a credential.
const leakPrefix = "swell-leak-"

// leakCreds are the distinctive credentials of TestNoSecretInAnyOutput,
// each "swell-leak-<what>-<16 random hex>": the right ones the brokers
// accept and wrong ones they refuse (a refused password must not leak
// either).
type leakCreds map[string]string

func newLeakCreds(t *testing.T, names ...string) leakCreds {
	t.Helper()
	c := leakCreds{}
	for _, n := range names {
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		c[n] = leakPrefix + n + "-" + hex.EncodeToString(b)
	}
	return c
}

// needles are what must appear in no output: each credential, its random
// part alone, its base64 forms (standard, raw and URL alphabets, at each
// of the three alignments it can take inside a longer encoded blob), and
// the common prefix.
func (c leakCreds) needles() map[string]string {
	out := map[string]string{leakPrefix: "the credential prefix"}
	for name, v := range c {
		out[v] = name
		out[v[strings.LastIndexByte(v, '-')+1:]] = name + " (random part)"
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			out[enc.EncodeToString([]byte(v))] = name + " (base64)"
			for pad := 1; pad <= 2; pad++ {
				// Inside a longer blob the first and last 4-char groups
				// depend on the neighbouring bytes; the middle does not.
				s := enc.EncodeToString(append(make([]byte, pad), v...))
				out[strings.TrimRight(s[4:len(s)-4], "=")] = fmt.Sprintf("%s (base64 at offset %d)", name, pad)
			}
			s := enc.EncodeToString([]byte(v))
			out[s[:len(s)-4]] = name + " (base64, unpadded prefix)"
		}
	}
	return out
}

// outputPlace is one output collected for the scan.
type outputPlace struct {
	name string
	data []byte
}

// TestNoSecretInAnyOutput gives every credential-carrying path of Swell a
// distinctive password (from Kubernetes Secrets for the controller, from
// KEDA-resolved metadata and --secrets-dir files for the external scaler),
// drives each through success and failure (a wrong password, a bad
// address, a missing Secret key, credentials written inline or in a URL,
// brokers stopped mid-run), then greps every output Swell writes: the
// controller's log, every Event, every QWorker, ScalerConfig and
// PodAutoscaler status, the controller's and the external scaler's
// /metrics, the external scaler's log and gRPC errors, and the brokers'
// logs. No credential, nor its base64 form, may appear in any of them; and
// each place must hold the failures the test provoked, so the scan is not
// of empty output.
//
// Brokers: Redis (requirepass and an ACL user), RabbitMQ (AMQP and the
// management API), NATS (user/password), Kafka (kfake with SASL PLAIN and
// SCRAM-SHA-256), and the external scaler's http and prometheus sources
// (bearer tokens). `swell cpa` takes no credential of its own; a
// PodAutoscaler's http metric with an Authorization header stands for the
// CPA http method's headers.
func TestNoSecretInAnyOutput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c := startController(t)
	creds := newLeakCreds(t,
		"redis", "redis-acl", "redis-wrong", "rabbitmq", "rabbitmq-wrong", "nats", "nats-wrong",
		"kafka-plain", "kafka-scram", "kafka-wrong", "http-token", "http-wrong", "prom-token", "prom-wrong",
		"pa-header", "pa-header-wrong")
	be := startAuthBrokers(ctx, t, creds)
	ns := newNamespace(ctx, t)
	fillAuthQueues(ctx, t, be, creds)
	closed := closedAddr(t)

	// The controller's paths: Secrets → ScalerConfigs → QWorkers and
	// PodAutoscalers.
	createLeakSecrets(ctx, t, ns, creds)
	cases := leakScalerConfigs(be, creds, closed)
	for _, lc := range cases {
		sc := &qv1.ScalerConfig{ObjectMeta: metav1.ObjectMeta{Name: lc.name, Namespace: ns}, Spec: lc.spec}
		if err := c.Create(ctx, sc); err != nil {
			t.Fatalf("create ScalerConfig %s: %v", lc.name, err)
		}
		qw := kwokQWorker(ns, lc.name, lc.queue, 0, 5, 0.5)
		qw.Spec.ScaleConfig.ScalerConfigRef = lc.name
		if err := c.Create(ctx, qw); err != nil {
			t.Fatalf("create QWorker %s: %v", lc.name, err)
		}
	}
	// The controller refuses user-configured calls to loopback's API
	// server address, so this metric listens on the host's other address
	// (as metrics-server's does).
	authServer := bearerServerOn(t, hostIPv4(t), creds["pa-header"], `{"value": 3}`)
	createLeakPodAutoscalers(ctx, t, c, ns, authServer.URL, creds["pa-header-wrong"])

	// The external scaler: the real binary, credentials from metadata
	// (KEDA's resolved *FromEnv) and from --secrets-dir files.
	httpSrv := bearerServer(t, creds["http-token"], `{"stats": {"depth": 4}}`)
	promSrv := bearerServer(t, creds["prom-token"], `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"6"]}]}}`)
	esCases, bindings := leakScaledObjects(be, creds, closed, httpSrv.URL, promSrv.URL)
	es := startLeakExternalScaler(ctx, t, creds, bindings)

	// Every controller path settles: the right credentials measure, the
	// wrong ones report.
	for _, lc := range cases {
		waitScalerConfigHealthy(ctx, t, c, ns, lc.name, lc.healthy)
		want := metav1.ConditionFalse
		if lc.healthy {
			want = metav1.ConditionTrue
		}
		sourceHealthy(ctx, t, c, ns, lc.name, want)
	}
	waitPodAutoscaler(ctx, t, c, ns, "pa-redis", "a decision from the backlog", func(pa *swellv1.PodAutoscaler) bool {
		return pa.Status.LastDecision != nil
	})
	for _, pa := range []string{"pa-rabbitmq-wrong", "pa-http-header"} {
		waitPodAutoscaler(ctx, t, c, ns, pa, "Ready=False", notReady)
		waitPodAutoscalerEvent(ctx, t, ns, pa, "FailedGetMetrics")
	}
	for _, ec := range esCases {
		es.run(ctx, t, ec)
	}

	// Brokers stopped mid-run: every connection that worked now fails.
	for _, comp := range []string{"redis", "rabbitmq", "nats"} {
		if err := be.StopComponent(comp); err != nil {
			t.Fatal(err)
		}
	}
	// A ScalerConfig reports (event BrokerUnreachable) when its health
	// changes, at its next check (every 30 s): the ones that worked.
	for _, lc := range cases {
		if lc.healthy && lc.stoppable {
			sourceHealthy(ctx, t, c, ns, lc.name, metav1.ConditionFalse)
			waitScalerConfigHealthy(ctx, t, c, ns, lc.name, false)
			waitScalerConfigEvent(ctx, t, ns, lc.name, "BrokerUnreachable")
		}
	}
	waitPodAutoscaler(ctx, t, c, ns, "pa-redis", "Ready=False while Redis is stopped", notReady)
	for _, ec := range esCases {
		if ec.stoppable {
			es.waitFailure(ctx, t, ec)
		}
	}

	places := collectLeakOutputs(ctx, t, c, ns, cases, es, be)
	scanForCredentials(t, places, creds)
}

// startAuthBrokers starts Redis, RabbitMQ (with management), NATS and
// Kafka requiring the test's credentials, apart from the shared
// environment's open brokers, so stopping them disturbs no other test.
func startAuthBrokers(ctx context.Context, t *testing.T, creds leakCreds) *testenv.Env {
	t.Helper()
	be, err := testenv.Start(ctx, testenv.Options{
		Redis: true, RabbitMQManagement: true, NATS: true, Kafka: true,
		Auth: &testenv.BrokerAuth{
			RedisPassword: creds["redis"],
			RedisUsers:    map[string]string{"swell-acl": creds["redis-acl"]},
			RabbitMQUser:  "swell", RabbitMQPassword: creds["rabbitmq"],
			NATSUsers: map[string]string{"swell": creds["nats"]},
			KafkaUsers: []testenv.SASLUser{
				{Mechanism: "PLAIN", User: "swell-plain", Password: creds["kafka-plain"]},
				{Mechanism: "SCRAM-SHA-256", User: "swell-scram", Password: creds["kafka-scram"]},
			},
		},
	})
	if err != nil {
		t.Fatalf("start brokers with credentials: %v", err)
	}
	t.Cleanup(func() {
		be.Stop()
		if t.Failed() {
			t.Logf("credentialed brokers' logs kept in %s", be.Dir)
			return
		}
		_ = os.RemoveAll(be.Dir)
	})
	return be
}

const (
	leakList   = "leak-tasks"
	leakStream = "LEAK"
	leakTopic  = "leak-topic"
	leakGroup  = "leak-group"
)

// fillAuthQueues puts work on each broker, authenticating as a producer
// would, so the measuring paths read real backlogs.
func fillAuthQueues(ctx context.Context, t *testing.T, be *testenv.Env, creds leakCreds) {
	t.Helper()
	rdb := goredis.NewClient(&goredis.Options{Addr: be.RedisAddr, Password: creds["redis"]})
	defer func() { _ = rdb.Close() }()
	if err := rdb.LPush(ctx, leakList, "t1", "t2", "t3").Err(); err != nil {
		t.Fatalf("LPUSH: %v", err)
	}
	ch := testenv.RabbitQueue(t, be.RabbitMQURL, leakList, true)
	for range 3 {
		if err := ch.PublishWithContext(ctx, "", leakList, false, false, amqp.Publishing{Body: []byte("t")}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	js, _ := testenv.JetStreamQueue(ctx, t, be.NATSURL, leakStream, "leak", jetstream.ConsumerConfig{}, nats.UserInfo("swell", creds["nats"]))
	for range 3 {
		if _, err := js.Publish(ctx, "leak.task", []byte("t")); err != nil {
			t.Fatalf("JetStream publish: %v", err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(be.KafkaAddrs...), kgo.SASL(plain.Auth{User: "swell-plain", Pass: creds["kafka-plain"]}.AsMechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, leakTopic); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	for range 3 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: leakTopic, Value: []byte("t")}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: leakTopic, Partition: 0, At: 1, LeaderEpoch: -1})
	if _, err := adm.CommitOffsets(ctx, leakGroup, offsets); err != nil {
		t.Fatalf("commit offsets: %v", err)
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// createLeakSecrets stores every credential in the Secret
// "broker-credentials", one key each.
func createLeakSecrets(ctx context.Context, t *testing.T, ns string, creds leakCreds) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "broker-credentials", Namespace: ns}, StringData: map[string]string{}}
	for k, v := range creds {
		s.StringData[k] = v
	}
	if _, err := env.Clientset.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Secret: %v", err)
	}
}

// leakCase is one ScalerConfig (and the QWorker of the same name on it).
type leakCase struct {
	name  string
	spec  qv1.ScalerConfigSpec
	queue string
	// healthy says whether the broker accepts it.
	healthy bool
	// stoppable: its broker is a process the test stops mid-run (kfake is
	// in-process and stays up).
	stoppable bool
}

func secretPassword(key string) *qv1.Password {
	return &qv1.Password{Secret: &qv1.SecretKey{Name: "broker-credentials", Key: key}}
}

// leakScalerConfigs is every form a ScalerConfig takes a credential in
// (secret, valueFrom.secretKeyRef, inline value), for every broker type,
// right and wrong, plus bad addresses with right credentials and a
// missing Secret key.
func leakScalerConfigs(be *testenv.Env, creds leakCreds, closed string) []leakCase {
	rHost, rPort, _ := net.SplitHostPort(be.RedisAddr)
	cHost, cPort, _ := net.SplitHostPort(closed)
	amqpHost := strings.TrimSuffix(strings.SplitN(be.RabbitMQURL, "@", 2)[1], "/")
	aHost, aPort, _ := net.SplitHostPort(amqpHost)
	nHost, nPort, _ := net.SplitHostPort(strings.TrimPrefix(be.NATSURL, "nats://"))
	redis := func(name, host, port, user string, pw *qv1.Password, healthy bool) leakCase {
		return leakCase{name: name, queue: leakList, healthy: healthy, stoppable: healthy && port == rPort,
			spec: qv1.ScalerConfigSpec{Type: qv1.BrokerRedis, Config: qv1.ScalerConnection{Host: host, Port: port, Username: user, Password: pw,
				KeyspaceNotifications: name == "redis-secret"}}}
	}
	rabbit := func(name string, conn qv1.ScalerConnection, healthy bool) leakCase {
		conn.Username = "swell"
		return leakCase{name: name, queue: leakList, healthy: healthy, stoppable: healthy,
			spec: qv1.ScalerConfigSpec{Type: qv1.BrokerRabbitMQ, Config: conn}}
	}
	natsCfg := func(name string, conn qv1.ScalerConnection, healthy bool) leakCase {
		conn.Username, conn.Stream = "swell", leakStream
		return leakCase{name: name, queue: "workers", healthy: healthy, stoppable: healthy,
			spec: qv1.ScalerConfigSpec{Type: qv1.BrokerNATS, Config: conn}}
	}
	kafka := func(name string, brokers []string, mech, user, key string, healthy bool) leakCase {
		return leakCase{name: name, queue: leakTopic, healthy: healthy,
			spec: qv1.ScalerConfigSpec{Type: qv1.BrokerKafka, Config: qv1.ScalerConnection{Brokers: brokers, ConsumerGroup: leakGroup,
				SASLMechanism: mech, Username: user, Password: secretPassword(key)}}}
	}
	return []leakCase{
		redis("redis-secret", rHost, rPort, "", secretPassword("redis"), true),
		redis("redis-acl", rHost, rPort, "swell-acl", &qv1.Password{ValueFrom: &qv1.ValueFrom{SecretKeyRef: qv1.SecretKey{Name: "broker-credentials", Key: "redis-acl"}}}, true),
		redis("redis-inline", rHost, rPort, "", &qv1.Password{Value: creds["redis"]}, true),
		redis("redis-wrong", rHost, rPort, "", secretPassword("redis-wrong"), false),
		redis("redis-acl-wrong", rHost, rPort, "swell-acl", secretPassword("redis-wrong"), false),
		redis("redis-bad-address", cHost, cPort, "", secretPassword("redis"), false),
		redis("redis-missing-key", rHost, rPort, "", secretPassword("no-such-key"), false),
		rabbit("rabbitmq-secret", qv1.ScalerConnection{Host: aHost, Port: aPort, Password: secretPassword("rabbitmq"), ManagementURL: be.RabbitMQManagementURL}, true),
		rabbit("rabbitmq-url", qv1.ScalerConnection{URL: "amqp://" + amqpHost, Password: secretPassword("rabbitmq")}, true),
		rabbit("rabbitmq-wrong", qv1.ScalerConnection{Host: aHost, Port: aPort, Password: secretPassword("rabbitmq-wrong"), ManagementURL: be.RabbitMQManagementURL}, false),
		rabbit("rabbitmq-bad-address", qv1.ScalerConnection{Host: cHost, Port: cPort, Password: secretPassword("rabbitmq")}, false),
		natsCfg("nats-secret", qv1.ScalerConnection{URL: be.NATSURL, Password: secretPassword("nats")}, true),
		natsCfg("nats-wrong", qv1.ScalerConnection{Host: nHost, Port: nPort, Password: secretPassword("nats-wrong")}, false),
		natsCfg("nats-bad-address", qv1.ScalerConnection{Host: cHost, Port: cPort, Password: secretPassword("nats")}, false),
		kafka("kafka-plain", be.KafkaAddrs, "PLAIN", "swell-plain", "kafka-plain", true),
		kafka("kafka-scram", be.KafkaAddrs, "SCRAM-SHA-256", "swell-scram", "kafka-scram", true),
		kafka("kafka-wrong", be.KafkaAddrs, "PLAIN", "swell-plain", "kafka-wrong", false),
		kafka("kafka-scram-wrong", be.KafkaAddrs, "SCRAM-SHA-256", "swell-scram", "kafka-wrong", false),
		kafka("kafka-bad-address", []string{closed}, "PLAIN", "swell-plain", "kafka-plain", false),
	}
}

// createLeakPodAutoscalers: one PodAutoscaler measuring a queue through a
// working ScalerConfig, one through a wrong password, and one whose http
// metric carries an Authorization header the server refuses.
func createLeakPodAutoscalers(ctx context.Context, t *testing.T, c client.Client, ns, authURL, wrongToken string) {
	t.Helper()
	for name, sc := range map[string]string{"pa-redis": "redis-secret", "pa-rabbitmq-wrong": "rabbitmq-wrong"} {
		createCPADeployment(ctx, t, ns, name, 1, "")
		if err := c.Create(ctx, sourcePodAutoscaler(ns, name, sc, leakList)); err != nil {
			t.Fatalf("create PodAutoscaler %s: %v", name, err)
		}
	}
	createCPADeployment(ctx, t, ns, "pa-http-header", 1, "")
	// The header's value is not the one the server wants: 401.
	pa := newPodAutoscaler(ns, "pa-http-header", cpa.PerResource, swellv1.EvaluateMethod{Expression: "value"}, authURL+"/metric")
	pa.Spec.Metric.HTTP.Headers = map[string]string{"Authorization": "Bearer " + wrongToken}
	if err := c.Create(ctx, pa); err != nil {
		t.Fatalf("create PodAutoscaler pa-http-header: %v", err)
	}
}

// bearerServer answers body to requests bearing token, 401 to others, on
// loopback.
func bearerServer(t *testing.T, token, body string) *httptest.Server {
	t.Helper()
	return bearerServerOn(t, "127.0.0.1", token, body)
}

// bearerServerOn is bearerServer listening on ip.
func bearerServerOn(t *testing.T, ip, token, body string) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}))
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	_ = s.Listener.Close()
	s.Listener = l
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// hostIPv4 is the first IPv4 address of an up, non-loopback interface.
func hostIPv4(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			return ipn.IP.String()
		}
	}
	t.Fatal("this machine has no non-loopback IPv4 address (the suite's metrics-server needs one too)")
	return ""
}

func waitScalerConfigHealthy(ctx context.Context, t *testing.T, c client.Client, ns, name string, healthy bool) {
	t.Helper()
	waitFor(ctx, t, fmt.Sprintf("ScalerConfig %s healthy=%t", name, healthy), func() (bool, error) {
		sc := &qv1.ScalerConfig{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sc); err != nil {
			return false, err
		}
		if sc.Status.ObservedGeneration != sc.Generation || sc.Status.Healthy != healthy {
			return false, nil
		}
		return healthy || sc.Status.Message != "", nil
	})
}

func waitScalerConfigEvent(ctx context.Context, t *testing.T, ns, name, reason string) {
	t.Helper()
	waitFor(ctx, t, fmt.Sprintf("event %s on ScalerConfig %s", reason, name), func() (bool, error) {
		l, err := env.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false, err
		}
		for _, e := range l.Items {
			if e.Reason == reason && e.InvolvedObject.Kind == "ScalerConfig" {
				return true, nil
			}
		}
		return false, nil
	})
}

// leakExternalScaler is `swell external-scaler` run as a process, with its
// log in a file, and a gRPC client as KEDA's.
type leakExternalScaler struct {
	client      pb.ExternalScalerClient
	logPath     string
	metricsURL  string
	grpcErrors  bytes.Buffer
	errorsCount int
}

// esCase is one ScaledObject's metadata for the external scaler.
type esCase struct {
	name string
	md   map[string]string
	// ok says whether it measures; otherwise an error is expected.
	ok bool
	// stoppable: measured on a broker the test stops mid-run.
	stoppable bool
}

// startLeakExternalScaler runs the external scaler with every credential
// as a file under --secrets-dir, as a mounted Secret would be, each
// declared for the addresses in bindings (name → host:port).
func startLeakExternalScaler(ctx context.Context, t *testing.T, creds leakCreds, bindings map[string][]string) *leakExternalScaler {
	t.Helper()
	bin := buildSwell(t)
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	// A mounted Secret: one file per key.
	for k, v := range creds {
		if err := os.WriteFile(filepath.Join(secrets, k), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	grpcAddr, metricsAddr := closedAddr(t), closedAddr(t)
	logPath := filepath.Join(dir, "external-scaler.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"external-scaler", "--listen", grpcAddr, "--metrics-addr", metricsAddr,
		"--secrets-dir", secrets, "--poll-interval", "500ms", "--max-failures", "1"}
	// The brokers here are on loopback, which metadata may not name by
	// default; each secrets-directory credential is declared with the
	// addresses it may be sent to.
	args = append(args, "--egress-allow", "127.0.0.1/32")
	names := make([]string, 0, len(bindings))
	for name := range bindings {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		args = append(args, "--credential", name+"="+strings.Join(bindings[name], ","))
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start external scaler: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		_ = logFile.Close()
	})
	es := &leakExternalScaler{logPath: logPath, metricsURL: "http://" + metricsAddr + "/metrics"}
	waitFor(ctx, t, "the external scaler's /metrics", func() (bool, error) {
		resp, err := http.Get(es.metricsURL)
		if err != nil {
			return false, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	es.client = pb.NewExternalScalerClient(conn)
	return es
}

// leakScaledObjects is every credential form of every external scaler
// source, right and wrong, and the refused ones (inline, in a URL, a file
// credential sent where it was not declared for, an address the egress
// policy refuses), with the addresses each
// secrets-directory credential is declared for.
func leakScaledObjects(be *testenv.Env, creds leakCreds, closed, httpURL, promURL string) ([]esCase, map[string][]string) {
	amqpHost := strings.TrimSuffix(strings.SplitN(be.RabbitMQURL, "@", 2)[1], "/")
	natsHost := strings.TrimPrefix(be.NATSURL, "nats://")
	bindings := map[string][]string{
		"redis":          {be.RedisAddr, closed},
		"redis-acl":      {be.RedisAddr},
		"rabbitmq-wrong": {amqpHost, strings.TrimPrefix(be.RabbitMQManagementURL, "http://")},
		"nats":           {natsHost},
		"kafka-plain":    append([]string{closed}, be.KafkaAddrs...),
		"kafka-scram":    be.KafkaAddrs,
		"http-wrong":     {strings.TrimPrefix(httpURL, "http://")},
		"prom-token":     {strings.TrimPrefix(promURL, "http://")},
	}
	aHost, aPort, _ := net.SplitHostPort(amqpHost)
	kafka := strings.Join(be.KafkaAddrs, ",")
	redisMD := func(addr string, extra map[string]string) map[string]string {
		md := map[string]string{"source": "redis", "address": addr, "listName": leakList, "targetSize": "1"}
		for k, v := range extra {
			md[k] = v
		}
		return md
	}
	rabbitMD := func(extra map[string]string) map[string]string {
		md := map[string]string{"source": "rabbitmq", "host": aHost, "port": aPort, "queueName": leakList, "username": "swell"}
		for k, v := range extra {
			md[k] = v
		}
		return md
	}
	natsMD := func(url string, extra map[string]string) map[string]string {
		md := map[string]string{"source": "nats", "natsURL": url, "stream": leakStream, "consumer": "workers", "username": "swell"}
		for k, v := range extra {
			md[k] = v
		}
		return md
	}
	kafkaMD := func(servers, sasl, user string, extra map[string]string) map[string]string {
		md := map[string]string{"source": "kafka", "bootstrapServers": servers, "consumerGroup": leakGroup, "topic": leakTopic,
			"sasl": sasl, "username": user}
		for k, v := range extra {
			md[k] = v
		}
		return md
	}
	return []esCase{
		{name: "redis-env", ok: true, stoppable: true, md: redisMD(be.RedisAddr, map[string]string{"passwordFromEnv": creds["redis"]})},
		{name: "redis-acl-file", ok: true, stoppable: true, md: redisMD(be.RedisAddr, map[string]string{"username": "swell-acl", "passwordFile": "redis-acl"})},
		{name: "redis-wrong", md: redisMD(be.RedisAddr, map[string]string{"passwordFromEnv": creds["redis-wrong"]})},
		{name: "redis-bad-address", md: redisMD(closed, map[string]string{"passwordFile": "redis"})},
		{name: "redis-inline", md: redisMD(be.RedisAddr, map[string]string{"password": creds["redis"]})},
		{name: "redis-env-and-file", md: redisMD(be.RedisAddr, map[string]string{"passwordFromEnv": creds["redis"], "passwordFile": "redis"})},
		{name: "rabbitmq-env", ok: true, stoppable: true, md: rabbitMD(map[string]string{"passwordFromEnv": creds["rabbitmq"], "managementURL": be.RabbitMQManagementURL})},
		{name: "rabbitmq-wrong", md: rabbitMD(map[string]string{"passwordFile": "rabbitmq-wrong", "managementURL": be.RabbitMQManagementURL})},
		{name: "rabbitmq-url-credentials", md: map[string]string{"source": "rabbitmq", "url": "amqp://swell:" + creds["rabbitmq"] + "@" + amqpHost, "queueName": leakList}},
		{name: "nats-file", ok: true, stoppable: true, md: natsMD(be.NATSURL, map[string]string{"passwordFile": "nats"})},
		{name: "nats-wrong", md: natsMD(be.NATSURL, map[string]string{"passwordFromEnv": creds["nats-wrong"]})},
		{name: "nats-url-credentials", md: natsMD("nats://swell:"+creds["nats"]+"@"+natsHost, nil)},
		{name: "nats-bad-address", md: natsMD("nats://"+closed, map[string]string{"passwordFromEnv": creds["nats"]})},
		{name: "kafka-plain-env", ok: true, md: kafkaMD(kafka, "plaintext", "swell-plain", map[string]string{"passwordFromEnv": creds["kafka-plain"]})},
		{name: "kafka-scram-file", ok: true, md: kafkaMD(kafka, "scram_sha256", "swell-scram", map[string]string{"passwordFile": "kafka-scram"})},
		{name: "kafka-wrong", md: kafkaMD(kafka, "plaintext", "swell-plain", map[string]string{"passwordFromEnv": creds["kafka-wrong"]})},
		{name: "kafka-scram-wrong", md: kafkaMD(kafka, "scram_sha256", "swell-scram", map[string]string{"passwordFromEnv": creds["kafka-wrong"]})},
		{name: "kafka-bad-address", md: kafkaMD(closed, "plaintext", "swell-plain", map[string]string{"passwordFile": "kafka-plain"})},
		{name: "http-env", ok: true, md: map[string]string{"source": "http", "url": httpURL + "/stats", "valueLocation": "stats.depth", "bearerTokenFromEnv": creds["http-token"]}},
		{name: "http-wrong", md: map[string]string{"source": "http", "url": httpURL + "/stats", "valueLocation": "stats.depth", "bearerTokenFile": "http-wrong"}},
		{name: "http-url-credentials", md: map[string]string{"source": "http", "url": strings.Replace(httpURL, "://", "://user:"+creds["http-token"]+"@", 1) + "/stats", "valueLocation": "stats.depth"}},
		{name: "prometheus-file", ok: true, md: map[string]string{"source": "prometheus", "serverAddress": promURL, "query": "sum(up)", "bearerTokenFile": "prom-token"}},
		{name: "prometheus-wrong", md: map[string]string{"source": "prometheus", "serverAddress": promURL, "query": "sum(up)", "bearerTokenFromEnv": creds["prom-wrong"]}},
		{name: "redis-egress-refused", md: redisMD("169.254.7.7:6379", map[string]string{"passwordFromEnv": creds["redis"]})},
		{name: "nats-undeclared-destination", md: natsMD("nats://"+closed, map[string]string{"passwordFile": "nats"})},
	}, bindings
}

// run asks for ec's metric spec and values as KEDA does, until it gets a
// value (ok) or an error (otherwise), recording every gRPC error.
func (es *leakExternalScaler) run(ctx context.Context, t *testing.T, ec esCase) {
	t.Helper()
	ref := &pb.ScaledObjectRef{Name: ec.name, Namespace: "apps", ScalerMetadata: ec.md}
	spec, err := es.client.GetMetricSpec(ctx, ref)
	if err != nil {
		es.record(ec.name, "GetMetricSpec", err)
		if ec.ok {
			t.Fatalf("external scaler %s: GetMetricSpec: %v", ec.name, err)
		}
		return
	}
	req := &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: spec.MetricSpecs[0].MetricName}
	waitFor(ctx, t, "external scaler "+ec.name+" to answer", func() (bool, error) {
		_, err := es.client.GetMetrics(ctx, req)
		if err != nil {
			es.record(ec.name, "GetMetrics", err)
		}
		return (err == nil) == ec.ok, nil
	})
	if _, err := es.client.IsActive(ctx, ref); err != nil {
		es.record(ec.name, "IsActive", err)
	}
}

// waitFailure polls ec's metric until the stopped broker shows as an error.
func (es *leakExternalScaler) waitFailure(ctx context.Context, t *testing.T, ec esCase) {
	t.Helper()
	ref := &pb.ScaledObjectRef{Name: ec.name, Namespace: "apps", ScalerMetadata: ec.md}
	spec, err := es.client.GetMetricSpec(ctx, ref)
	if err != nil {
		t.Fatalf("external scaler %s: GetMetricSpec: %v", ec.name, err)
	}
	req := &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: spec.MetricSpecs[0].MetricName}
	waitFor(ctx, t, "external scaler "+ec.name+" to fail with its broker stopped", func() (bool, error) {
		_, err := es.client.GetMetrics(ctx, req)
		if err != nil {
			es.record(ec.name, "GetMetrics (broker stopped)", err)
		}
		return err != nil, nil
	})
}

func (es *leakExternalScaler) record(name, rpc string, err error) {
	es.errorsCount++
	st, _ := status.FromError(err)
	fmt.Fprintf(&es.grpcErrors, "%s %s: %s: %s\n", name, rpc, st.Code(), st.Message())
}

// collectLeakOutputs gathers every output Swell wrote during the test and
// checks that each holds what the test provoked, so no scan is vacuous.
func collectLeakOutputs(ctx context.Context, t *testing.T, c client.Client, ns string, cases []leakCase, es *leakExternalScaler, be *testenv.Env) []outputPlace {
	t.Helper()
	var places []outputPlace
	add := func(name string, data []byte, mustHave ...string) {
		t.Helper()
		if len(data) == 0 {
			t.Errorf("%s: collected nothing", name)
		}
		for _, s := range mustHave {
			if !bytes.Contains(data, []byte(s)) {
				t.Errorf("%s (%d bytes) does not mention %q: the scan would not cover the failure paths", name, len(data), s)
			}
		}
		places = append(places, outputPlace{name, data})
	}

	ctrlLog, err := os.ReadFile(filepath.Join(env.Dir, "swell-controller.log"))
	if err != nil {
		t.Fatalf("read controller log: %v", err)
	}
	add("controller log", ctrlLog, ns, "WRONGPASS", "Authorization Violation")

	events, err := env.Clientset.CoreV1().Events("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventsJSON, _ := json.Marshal(events.Items)
	// The brokers' own refusals of the wrong passwords, and the metric
	// server's of the wrong header, reached the events.
	add("events (all namespaces)", eventsJSON, "BrokerUnreachable", "SourceFailed", "FailedGetMetrics", "BrokerReachable",
		"WRONGPASS", "username or password not allowed", "Authorization Violation", "401", "no-such-key")
	requireLeakEvents(t, events.Items, ns)

	add("ScalerConfig statuses", statusesJSON(ctx, t, c, &qv1.ScalerConfigList{}), `"healthy":false`, `"message":"`, "no-such-key")
	requireSourceHealthyFalse(ctx, t, c, ns, cases)
	for _, name := range []string{"redis-wrong", "redis-acl-wrong", "rabbitmq-wrong", "nats-wrong", "kafka-wrong", "kafka-scram-wrong", "redis-missing-key"} {
		cond := meta.FindStatusCondition(getQWorker(ctx, t, c, ns, name).Status.Conditions, "SourceHealthy")
		if cond != nil {
			t.Logf("QWorker %s SourceHealthy=%s: %s", name, cond.Status, cond.Message)
		}
	}
	add("QWorker statuses", statusesJSON(ctx, t, c, &qv1.QWorkerList{}), `"type":"SourceHealthy"`, `"status":"False"`)
	add("PodAutoscaler statuses", statusesJSON(ctx, t, c, &swellv1.PodAutoscalerList{}), "FailedGetMetrics")

	add("controller /metrics", gatherText(t), "swell_qworker_backlog", ns)

	resp, err := http.Get(es.metricsURL)
	if err != nil {
		t.Fatalf("external scaler /metrics: %v", err)
	}
	esMetrics, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	add("external scaler /metrics", esMetrics, "swell_external_scaler_polls_total", "swell_external_scaler_requests_total")

	esLog, err := os.ReadFile(es.logPath)
	if err != nil {
		t.Fatal(err)
	}
	add("external scaler log", esLog, "poll failed", "tracking target")
	t.Logf("external scaler gRPC errors (%d), first lines:\n%s", es.errorsCount, firstLines(es.grpcErrors.String(), 12))
	add("external scaler gRPC errors", es.grpcErrors.Bytes(), "redis-inline", "rabbitmq-wrong", "kafka-wrong", "http-wrong", "prometheus-wrong")

	for _, comp := range []string{"redis", "rabbitmq", "nats"} {
		b, err := os.ReadFile(filepath.Join(be.Dir, comp+".log"))
		if err != nil {
			t.Fatalf("read %s log: %v", comp, err)
		}
		add(comp+" broker log", b)
	}
	return places
}

// requireLeakEvents: the failure events the test provoked were recorded,
// so the events scanned carry the error messages.
func requireLeakEvents(t *testing.T, events []corev1.Event, ns string) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range events {
		if e.Namespace == ns {
			seen[e.InvolvedObject.Kind+"/"+e.InvolvedObject.Name+"/"+e.Reason] = true
		}
	}
	for _, want := range []string{
		"ScalerConfig/redis-secret/BrokerUnreachable", "ScalerConfig/rabbitmq-secret/BrokerUnreachable",
		"ScalerConfig/nats-secret/BrokerUnreachable", "ScalerConfig/kafka-plain/BrokerReachable",
		"QWorker/redis-wrong/SourceFailed", "QWorker/rabbitmq-wrong/SourceFailed",
		"QWorker/nats-wrong/SourceFailed", "QWorker/kafka-wrong/SourceFailed",
		"QWorker/redis-secret/SourceFailed", // after Redis stopped
		"PodAutoscaler/pa-rabbitmq-wrong/FailedGetMetrics", "PodAutoscaler/pa-http-header/FailedGetMetrics",
		"PodAutoscaler/pa-redis/FailedGetMetrics",
	} {
		if !seen[want] {
			t.Errorf("no event %s in %s", want, ns)
		}
	}
}

// requireSourceHealthyFalse: every QWorker but those on the Kafka broker
// that stayed up reports SourceHealthy=False with a message, so the
// statuses scanned carry the error texts.
func requireSourceHealthyFalse(ctx context.Context, t *testing.T, c client.Client, ns string, cases []leakCase) {
	t.Helper()
	for _, lc := range cases {
		if lc.healthy && !lc.stoppable {
			continue
		}
		q := getQWorker(ctx, t, c, ns, lc.name)
		cond := meta.FindStatusCondition(q.Status.Conditions, "SourceHealthy")
		if cond == nil || cond.Status != metav1.ConditionFalse || cond.Message == "" {
			t.Errorf("QWorker %s: SourceHealthy %+v, want False with a message", q.Name, cond)
		}
	}
}

// statusesJSON lists every object of list's kind in all namespaces and
// returns their statuses (conditions, messages) as JSON.
func statusesJSON(ctx context.Context, t *testing.T, c client.Client, list client.ObjectList) []byte {
	t.Helper()
	if err := c.List(ctx, list); err != nil {
		t.Fatalf("list %T: %v", list, err)
	}
	raw, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Items []struct {
			Metadata struct{ Namespace, Name string } `json:"metadata"`
			Status   json.RawMessage                  `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, it := range doc.Items {
		fmt.Fprintf(&b, "%s/%s %s\n", it.Metadata.Namespace, it.Metadata.Name, it.Status)
	}
	return b.Bytes()
}

// gatherText is the controller's /metrics page: its registry in the text
// exposition format.
func gatherText(t *testing.T) []byte {
	t.Helper()
	mfs, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gather controller metrics: %v", err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// scanForCredentials fails the test for every credential form found in
// any place, naming the place, the credential and its context, and prints
// what was scanned.
func scanForCredentials(t *testing.T, places []outputPlace, creds leakCreds) {
	t.Helper()
	needles := creds.needles()
	keys := make([]string, 0, len(needles))
	for n := range needles {
		keys = append(keys, n)
	}
	sort.Strings(keys)
	total := 0
	for _, p := range places {
		total += len(p.data)
		for _, n := range keys {
			if i := bytes.Index(p.data, []byte(n)); i >= 0 {
				from, to := max(0, i-200), min(len(p.data), i+len(n)+100)
				t.Errorf("LEAK: %s holds %s at byte %d: …%s…", p.name, needles[n], i, p.data[from:to])
			}
		}
		t.Logf("scanned %-30s %9s bytes", p.name, strconv.Itoa(len(p.data)))
	}
	t.Logf("%d credentials, %d needles (each credential, its random part, its base64 forms at every alignment, the common prefix) checked in %d places, %d bytes in all",
		len(creds), len(needles), len(places), total)
}

// firstLines is s's first n lines, one per distinct ScaledObject and rpc.
func firstLines(s string, n int) string {
	seen := map[string]bool{}
	var out []string
	for _, l := range strings.Split(s, "\n") {
		k, _, _ := strings.Cut(l, ":")
		if l == "" || seen[k] || len(out) == n {
			continue
		}
		seen[k] = true
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}
