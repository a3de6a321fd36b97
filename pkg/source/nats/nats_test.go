package nats_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
	"github.com/swell-autoscaler/swell/pkg/source/nats"
)

var sharedURL string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunPackage(m, testenv.Options{NATS: true}, 2*time.Minute, func(e *testenv.Env) { sharedURL = e.NATSURL }))
}

// setup makes a stream <name> on subjects <name>.> with a durable
// explicit-ack consumer "workers", and returns a JetStream handle to drive
// it.
func setup(t testing.TB, url, name string) (jetstream.JetStream, jetstream.Consumer) {
	t.Helper()
	return testenv.JetStreamQueue(context.Background(), t, url, name, name, jetstream.ConsumerConfig{FilterSubject: name + ".tasks", AckWait: time.Hour})
}

func newClient(t testing.TB, cfg nats.Config) *nats.Client {
	t.Helper()
	c, err := nats.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func queue(t testing.TB, c *nats.Client, ref nats.QueueRef) source.Source {
	t.Helper()
	s, err := c.Queue(ref)
	if err != nil {
		t.Fatalf("Queue: %v", err)
	}
	return s
}

func publish(t testing.TB, js jetstream.JetStream, subject string, n int) {
	t.Helper()
	for range n {
		if _, err := js.Publish(context.Background(), subject, []byte("task")); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBacklog(t *testing.T) {
	js, cons := setup(t, sharedURL, "BACKLOG")
	s := queue(t, newClient(t, nats.Config{URL: sharedURL, Stream: "BACKLOG"}), nats.QueueRef{Consumer: "workers"})
	var msgs []jetstream.Msg
	steps := []struct {
		name            string
		do              func()
		ready, inFlight int64
	}{
		{"empty", func() {}, 0, 0},
		{"publish 5", func() { publish(t, js, "BACKLOG.tasks", 5) }, 5, 0},
		{"publish 2 outside the filter", func() { publish(t, js, "BACKLOG.other", 2) }, 5, 0},
		{"fetch 2", func() {
			batch, err := cons.Fetch(2)
			if err != nil {
				t.Fatal(err)
			}
			for m := range batch.Messages() {
				msgs = append(msgs, m)
			}
		}, 3, 2},
		{"ack 1", func() { _ = msgs[0].DoubleAck(context.Background()) }, 3, 1},
		{"ack 1 more", func() { _ = msgs[1].DoubleAck(context.Background()) }, 3, 0},
	}
	for _, st := range steps {
		st.do()
		got, err := s.Measure(context.Background())
		if err != nil {
			t.Fatalf("after %s: Measure: %v", st.name, err)
		}
		if got.Ready != st.ready || got.InFlight != st.inFlight || got.Backlog != st.ready+st.inFlight || got.Time.IsZero() {
			t.Fatalf("after %s: got %+v, want ready %d, in flight %d", st.name, got, st.ready, st.inFlight)
		}
	}
}

func TestMissingConsumerIsAnError(t *testing.T) {
	setup(t, sharedURL, "MISSING")
	c := newClient(t, nats.Config{URL: sharedURL})
	for _, ref := range []nats.QueueRef{{Stream: "MISSING", Consumer: "nobody"}, {Stream: "NOSTREAM", Consumer: "workers"}} {
		got, err := queue(t, c, ref).Measure(context.Background())
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", ref.Consumer)) {
			t.Fatalf("Measure %+v = %+v, %v; want an error naming the consumer", ref, got, err)
		}
	}
}

func TestBrokerStopped(t *testing.T) {
	env := testenv.New(t, testenv.Options{NATS: true})
	setup(t, env.NATSURL, "STOP")
	s := queue(t, newClient(t, nats.Config{URL: env.NATSURL, Stream: "STOP"}), nats.QueueRef{Consumer: "workers"})
	if _, err := s.Measure(context.Background()); err != nil {
		t.Fatalf("Measure before stop: %v", err)
	}
	env.Stop()
	got, err := s.Measure(context.Background())
	if err == nil {
		t.Fatalf("Measure after the server stopped = %+v, want an error", got)
	}
}

func TestWatchWakesOnPublish(t *testing.T) {
	js, _ := setup(t, sharedURL, "WATCH")
	s := queue(t, newClient(t, nats.Config{URL: sharedURL}), nats.QueueRef{Stream: "WATCH", Consumer: "workers"})
	ctx, cancel := context.WithCancel(context.Background())
	wake := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- s.(source.Pusher).Watch(ctx, wake) }()
	waitWake(t, wake, done, "start")
	publish(t, js, "WATCH.other", 1) // outside the consumer's filter: no wake
	select {
	case <-wake:
		t.Fatal("woke on a subject the consumer does not read")
	case <-time.After(300 * time.Millisecond):
	}
	publish(t, js, "WATCH.tasks", 1)
	waitWake(t, wake, done, "publish")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watch after cancel = %v, want nil", err)
	}
}

func waitWake(t *testing.T, wake <-chan struct{}, done <-chan error, what string) {
	t.Helper()
	select {
	case <-wake:
	case err := <-done:
		t.Fatalf("Watch returned %v before waking on %s", err, what)
	case <-time.After(time.Second):
		t.Fatalf("no wake within a second of %s", what)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  nats.Config
		want string
	}{
		{"minimal", nats.Config{URL: "nats://n:4222"}, ""},
		{"cluster and tls", nats.Config{URL: "tls://a:4222, tls://b:4222", Username: "u", Password: "p", TLS: brokerconn.TLS{Enabled: true}, Stream: "TASKS"}, ""},
		{"no url", nats.Config{}, "url is required"},
		{"bad scheme", nats.Config{URL: "nats://a,http://b"}, `url (entry 2): scheme "http"`},
		{"credentials in url", nats.Config{URL: "nats://u:secretpw@n"}, "must not contain credentials"},
		{"user without password", nats.Config{URL: "nats://n", Username: "u"}, "username and password"},
		{"bad stream", nats.Config{URL: "nats://n", Stream: "a.b"}, `stream "a.b"`},
		{"negative timeout", nats.Config{URL: "nats://n", DialTimeout: -1}, "dialTimeout"},
		{"tls off with CA", nats.Config{URL: "nats://n", TLS: brokerconn.TLS{CAPEM: []byte("x")}}, "tls.enabled is false"},
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
				t.Fatalf("error repeats the password: %v", err)
			}
		})
	}
}

func TestParseQueueRef(t *testing.T) {
	cases := []struct {
		in      string
		want    nats.QueueRef
		wantErr bool
	}{
		{"workers", nats.QueueRef{Consumer: "workers"}, false},
		{"TASKS/workers", nats.QueueRef{Stream: "TASKS", Consumer: "workers"}, false},
		{"/workers", nats.QueueRef{Consumer: "workers"}, true},
		{"TASKS/", nats.QueueRef{Stream: "TASKS"}, true},
		{"", nats.QueueRef{}, true},
	}
	for _, tc := range cases {
		got, err := nats.ParseQueueRef(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseQueueRef(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestQueueNeedsAStream(t *testing.T) {
	c := newClient(t, nats.Config{URL: sharedURL})
	if _, err := c.Queue(nats.QueueRef{Consumer: "workers"}); err == nil || !strings.Contains(err.Error(), "no stream") {
		t.Fatalf("Queue without any stream = %v, want an error", err)
	}
}

func BenchmarkMeasure(b *testing.B) {
	js, _ := setup(b, sharedURL, "BENCH")
	publish(b, js, "BENCH.tasks", 10)
	s := queue(b, newClient(b, nats.Config{URL: sharedURL, Stream: "BENCH"}), nats.QueueRef{Consumer: "workers"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Measure(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOldestAge: the age is the first undelivered message's on the
// consumer's filter subject, from the server's stored time; messages
// outside the filter and messages already delivered do not count.
func TestOldestAge(t *testing.T) {
	js, cons := setup(t, sharedURL, "AGE")
	s := queue(t, newClient(t, nats.Config{URL: sharedURL, Stream: "AGE"}), nats.QueueRef{Consumer: "workers"})
	measure := func(step string) (source.Sample, time.Time) {
		t.Helper()
		got, err := s.Measure(context.Background())
		if err != nil {
			t.Fatalf("%s: Measure: %v", step, err)
		}
		return got, time.Now()
	}
	if got, _ := measure("empty"); got.OldestAge != 0 {
		t.Fatalf("empty: OldestAge %v, want 0", got.OldestAge)
	}
	publish(t, js, "AGE.other", 1) // older, outside the filter
	time.Sleep(300 * time.Millisecond)
	beforeA := time.Now()
	publish(t, js, "AGE.tasks", 1)
	// The server stamps messages with the same clock the test reads.
	time.Sleep(1100 * time.Millisecond)
	beforeB := time.Now()
	publish(t, js, "AGE.tasks", 1)

	got, after := measure("A and B waiting")
	if got.OldestAge < time.Second || got.OldestAge > after.Sub(beforeA) {
		t.Fatalf("A and B waiting: OldestAge %v, want A's age: ≥ 1s (slept 1.1s after publishing it), ≤ %v (since before it)", got.OldestAge, after.Sub(beforeA))
	}
	batch, err := cons.Fetch(1)
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		_ = m.DoubleAck(context.Background())
	}
	got, after = measure("A delivered")
	if got.Ready != 1 || got.OldestAge <= 0 || got.OldestAge > after.Sub(beforeB) {
		t.Fatalf("A delivered: %+v, want 1 ready and B's age in (0, %v]", got, after.Sub(beforeB))
	}
	batch, err = cons.Fetch(1)
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() {
	}
	if got, _ := measure("all delivered"); got.OldestAge != 0 || got.InFlight != 1 {
		t.Fatalf("all delivered: %+v, want OldestAge 0 with 1 in flight", got)
	}
}
