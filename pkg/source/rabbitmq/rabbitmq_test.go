package rabbitmq_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
	"github.com/swell-autoscaler/swell/pkg/source/rabbitmq"
)

// shared is the RabbitMQ (with management) most tests use.
var shared *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.RunPackage(m, testenv.Options{RabbitMQManagement: true}, 3*time.Minute, func(e *testenv.Env) { shared = e }))
}

// configFor splits the env's amqp://guest:guest@host:port/ URL into the
// credential-free URL and the credential fields the controller would pass.
func configFor(t testing.TB, env *testenv.Env, withManagement bool) rabbitmq.Config {
	t.Helper()
	u, err := url.Parse(env.RabbitMQURL)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	cfg := rabbitmq.Config{URL: "amqp://" + u.Host, Username: u.User.Username(), Password: brokerconn.Secret(pw)}
	if withManagement {
		cfg.ManagementURL = env.RabbitMQManagementURL
	}
	return cfg
}

func newClient(t testing.TB, cfg rabbitmq.Config) *rabbitmq.Client {
	t.Helper()
	c, err := rabbitmq.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// producer declares queue (transient) and opens a channel for driving it
// from the test side.
func producer(t testing.TB, queue string) *amqp.Channel {
	t.Helper()
	return testenv.RabbitQueue(t, shared.RabbitMQURL, queue, false)
}

func publish(t *testing.T, ch *amqp.Channel, queue string, n int) {
	t.Helper()
	for i := range n {
		err := ch.PublishWithContext(context.Background(), "", queue, false, false, amqp.Publishing{Body: []byte{byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// get takes n messages without acknowledging them.
func get(t *testing.T, ch *amqp.Channel, queue string, n int) []amqp.Delivery {
	t.Helper()
	var out []amqp.Delivery
	for range n {
		d, ok, err := ch.Get(queue, false)
		if err != nil || !ok {
			t.Fatalf("basic.get: ok=%v err=%v", ok, err)
		}
		out = append(out, d)
	}
	return out
}

// eventually measures until the sample has the wanted counts: the ready
// count is exact at once, the unacknowledged count follows RabbitMQ's
// statistics collection (every 5 s).
func eventually(t *testing.T, s source.Source, step string, ready, inFlight int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got source.Sample
	var err error
	for time.Now().Before(deadline) {
		got, err = s.Measure(context.Background())
		if err == nil && got.Ready == ready && got.InFlight == inFlight && got.Backlog == ready+inFlight {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("after %s: last sample %+v (err %v), want ready %d, in flight %d", step, got, err, ready, inFlight)
}

func TestBacklog(t *testing.T) {
	for _, mgmt := range []bool{false, true} {
		t.Run(fmt.Sprintf("management=%v", mgmt), func(t *testing.T) {
			queue := strings.ReplaceAll(t.Name(), "/", "-")
			ch := producer(t, queue)
			s, err := newClient(t, configFor(t, shared, mgmt)).Queue(queue)
			if err != nil {
				t.Fatal(err)
			}
			// Without a management URL unacknowledged messages are unknown
			// and count as 0.
			inFlight := func(n int64) int64 {
				if mgmt {
					return n
				}
				return 0
			}
			var got []amqp.Delivery
			steps := []struct {
				name            string
				do              func()
				ready, inFlight int64
			}{
				{"declare", func() {}, 0, 0},
				{"publish 5", func() { publish(t, ch, queue, 5) }, 5, 0},
				{"get 2 without ack", func() { got = get(t, ch, queue, 2) }, 3, inFlight(2)},
				{"ack 1", func() { _ = got[0].Ack(false) }, 3, inFlight(1)},
				{"nack 1 with requeue", func() { _ = got[1].Nack(false, true) }, 4, 0},
			}
			for _, st := range steps {
				st.do()
				eventually(t, s, st.name, st.ready, st.inFlight)
			}
		})
	}
}

func TestMissingQueueIsAnError(t *testing.T) {
	for _, mgmt := range []bool{false, true} {
		s, _ := newClient(t, configFor(t, shared, mgmt)).Queue("no-such-queue")
		got, err := s.Measure(context.Background())
		if err == nil || !strings.Contains(err.Error(), `"no-such-queue"`) {
			t.Fatalf("management=%v: Measure = %+v, %v; want an error naming the queue", mgmt, got, err)
		}
	}
}

// TestReconnects closes the client's connection from the server side and
// checks the next measurements dial again.
func TestReconnects(t *testing.T) {
	queue := "reconnect"
	ch := producer(t, queue)
	publish(t, ch, queue, 2)
	s, _ := newClient(t, configFor(t, shared, false)).Queue(queue)
	eventually(t, s, "publish 2", 2, 0)
	closeSwellConnections(t)
	eventually(t, s, "server closed the connection", 2, 0)
}

func closeSwellConnections(t *testing.T) {
	t.Helper()
	var conns []struct {
		Name       string `json:"name"`
		ClientProp struct {
			Name string `json:"connection_name"`
		} `json:"client_properties"`
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(conns) == 0 && time.Now().Before(deadline) {
		mgmtJSON(t, http.MethodGet, "/api/connections", &conns)
		var ours []string
		for _, c := range conns {
			if c.ClientProp.Name == "swell" {
				ours = append(ours, c.Name)
			}
		}
		if len(ours) == 0 {
			conns = nil
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for _, name := range ours {
			mgmtJSON(t, http.MethodDelete, "/api/connections/"+url.PathEscape(name), nil)
		}
		return
	}
	t.Fatal("the management API never listed swell's connection")
}

func mgmtJSON(t *testing.T, method, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest(method, shared.RabbitMQManagementURL+path, nil)
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBrokerStopped(t *testing.T) {
	env := testenv.New(t, testenv.Options{RabbitMQ: true})
	s, err := newClient(t, configFor(t, env, false)).Queue("q")
	if err != nil {
		t.Fatal(err)
	}
	env.Stop()
	for range 3 { // the dead connection, then failed redials
		got, err := s.Measure(context.Background())
		if err == nil {
			t.Fatalf("Measure after the broker stopped = %+v, want an error", got)
		}
	}
}

// TestManagementFailureIsAnError: with a management URL, a refused request
// fails the sample instead of dropping InFlight to 0; the error shows no
// password.
func TestManagementFailureIsAnError(t *testing.T) {
	const pw = "not-the-password-42"
	queue := "mgmt-fail"
	producer(t, queue)
	cfg := configFor(t, shared, true)
	cfg.ManagementUsername, cfg.ManagementPassword = "guest", pw
	s, _ := newClient(t, cfg).Queue(queue)
	_, err := s.Measure(context.Background())
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Measure = %v, want a 401 error", err)
	}
	if strings.Contains(err.Error(), pw) {
		t.Fatalf("error shows the password: %v", err)
	}
}

func TestWrongPasswordNotShown(t *testing.T) {
	const pw = "wrong-secret-77"
	cfg := configFor(t, shared, false)
	cfg.Password = pw
	if s := fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg); strings.Contains(s, pw) {
		t.Fatalf("printed config shows the password: %s", s)
	}
	_, err := rabbitmq.New(context.Background(), cfg)
	if err == nil {
		t.Fatal("New with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), pw) {
		t.Fatalf("error shows the password: %v", err)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  rabbitmq.Config
		want string
	}{
		{"url", rabbitmq.Config{URL: "amqp://mq:5672"}, ""},
		{"host and tls", rabbitmq.Config{Host: "mq", TLS: brokerconn.TLS{Enabled: true}, ManagementURL: "https://mq:15671"}, ""},
		{"neither url nor host", rabbitmq.Config{}, "set url or host"},
		{"url and host", rabbitmq.Config{URL: "amqp://mq", Host: "mq"}, "not both"},
		{"credentials in url", rabbitmq.Config{URL: "amqp://u:secretpw@mq"}, "must not contain credentials"},
		{"bad scheme", rabbitmq.Config{URL: "http://mq"}, `url: scheme "http"`},
		{"url without host", rabbitmq.Config{URL: "amqp://"}, "url: has no host"},
		{"port with url", rabbitmq.Config{URL: "amqp://mq", Port: 5672}, "port goes into url"},
		{"port out of range", rabbitmq.Config{Host: "mq", Port: 99999}, "port 99999"},
		{"management scheme", rabbitmq.Config{Host: "mq", ManagementURL: "amqp://mq"}, "managementURL: scheme"},
		{"management credentials", rabbitmq.Config{Host: "mq", ManagementURL: "http://a:b@mq"}, "managementURL: must not contain credentials"},
		{"negative timeout", rabbitmq.Config{Host: "mq", DialTimeout: -1}, "dialTimeout"},
		{"tls off with options", rabbitmq.Config{Host: "mq", TLS: brokerconn.TLS{ServerName: "x"}}, "tls.enabled is false"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Fatalf("error repeats the URL's password: %v", err)
			}
		})
	}
}

func BenchmarkMeasure(b *testing.B) {
	for _, mgmt := range []bool{false, true} {
		b.Run(fmt.Sprintf("management=%v", mgmt), func(b *testing.B) {
			queue := "bench"
			producer(b, queue)
			s, _ := newClient(b, configFor(b, shared, mgmt)).Queue(queue)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Measure(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestOldestAge: with a management URL the age is the head message's
// timestamp property (classic queue), once RabbitMQ's statistics have
// collected it; without one, or for messages without a timestamp, it is
// unknown (0).
func TestOldestAge(t *testing.T) {
	queue := "oldest-age"
	ch := producer(t, queue)
	withMgmt, err := newClient(t, configFor(t, shared, true)).Queue(queue)
	if err != nil {
		t.Fatal(err)
	}
	noMgmt, err := newClient(t, configFor(t, shared, false)).Queue(queue)
	if err != nil {
		t.Fatal(err)
	}
	// A message without a timestamp first: no age to read.
	publish(t, ch, queue, 1)
	eventually(t, withMgmt, "untimed message", 1, 0)
	if got, err := withMgmt.Measure(context.Background()); err != nil || got.OldestAge != 0 {
		t.Fatalf("untimed head: %+v (%v), want OldestAge 0", got, err)
	}
	_ = get(t, ch, queue, 1)[0].Ack(false)
	stamp := time.Now().Add(-time.Minute).Truncate(time.Second)
	for _, ago := range []time.Duration{0, 30 * time.Second} { // head first
		if err := ch.PublishWithContext(context.Background(), "", queue, false, false, amqp.Publishing{Body: []byte("t"), Timestamp: stamp.Add(ago)}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	var got source.Sample
	for time.Now().Before(deadline) {
		if got, err = withMgmt.Measure(context.Background()); err == nil && got.OldestAge != 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if elapsed := time.Since(stamp); got.OldestAge < time.Minute || got.OldestAge > elapsed {
		t.Fatalf("timed head: %+v (%v), want OldestAge in [1m, %v] (the head's timestamp)", got, err, elapsed)
	}
	if got, err := noMgmt.Measure(context.Background()); err != nil || got.OldestAge != 0 || got.Ready != 2 {
		t.Fatalf("without management: %+v (%v), want 2 ready and OldestAge 0 (unknown)", got, err)
	}
}
