package redis_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
	"github.com/swell-autoscaler/swell/pkg/source/redis"
)

// sharedAddr is the Redis every test but the broker-stop one uses.
var sharedAddr string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunPackage(m, testenv.Options{Redis: true}, 2*time.Minute, func(e *testenv.Env) { sharedAddr = e.RedisAddr }))
}

func configFor(t testing.TB, addr string) redis.Config {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return redis.Config{Host: host, Port: p}
}

// newClient connects a source Client and a plain client for driving the
// queue, both closed when the test ends.
func newClient(t testing.TB, cfg redis.Config) (*redis.Client, *goredis.Client) {
	t.Helper()
	c, err := redis.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	rdb := goredis.NewClient(&goredis.Options{Addr: sharedAddr, DB: cfg.DB})
	t.Cleanup(func() { _ = rdb.Close() })
	return c, rdb
}

func queue(t testing.TB, c *redis.Client, ref redis.QueueRef) source.Source {
	t.Helper()
	s, err := c.Queue(ref)
	if err != nil {
		t.Fatalf("Queue(%+v): %v", ref, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func measure(t *testing.T, s source.Source) source.Sample {
	t.Helper()
	got, err := s.Measure(context.Background())
	if err != nil {
		t.Fatalf("Measure: %v", err)
	}
	if got.Time.IsZero() {
		t.Fatal("Measure returned a sample without a time")
	}
	return got
}

func wantCounts(t *testing.T, step string, got source.Sample, ready, inFlight int64) {
	t.Helper()
	if got.Ready != ready || got.InFlight != inFlight || got.Backlog != ready+inFlight {
		t.Fatalf("after %s: got backlog %d (ready %d, in flight %d), want backlog %d (ready %d, in flight %d)",
			step, got.Backlog, got.Ready, got.InFlight, ready+inFlight, ready, inFlight)
	}
}

func TestListBacklog(t *testing.T) {
	c, rdb := newClient(t, configFor(t, sharedAddr))
	ctx := context.Background()
	key := "list-" + t.Name()
	s := queue(t, c, redis.QueueRef{Key: key})
	steps := []struct {
		name  string
		do    func() error
		ready int64
	}{
		{"nothing (missing key is an empty queue)", func() error { return nil }, 0},
		{"LPUSH 3", func() error { return rdb.LPush(ctx, key, "a", "b", "c").Err() }, 3},
		{"RPUSH 2", func() error { return rdb.RPush(ctx, key, "d", "e").Err() }, 5},
		{"BRPOP 1", func() error { return rdb.BRPop(ctx, time.Second, key).Err() }, 4},
		{"LPOP 4", func() error { return rdb.LPopCount(ctx, key, 4).Err() }, 0},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		wantCounts(t, st.name, measure(t, s), st.ready, 0)
	}
}

// TestMeasureDroppingRemovesOnlyTheValues checks the atomic remove-then-
// count the QWorker controller uses for QScaler's hand-back placeholders:
// matching elements are removed wherever they sit and not counted; others
// stay in order; a stream queue is only measured.
func TestMeasureDroppingRemovesOnlyTheValues(t *testing.T) {
	c, rdb := newClient(t, configFor(t, sharedAddr))
	ctx := context.Background()
	key := "list-" + t.Name()
	type dropper interface {
		MeasureDropping(ctx context.Context, values []string) (source.Sample, int64, error)
	}
	s := queue(t, c, redis.QueueRef{Key: key}).(dropper)
	if err := rdb.RPush(ctx, key, "a", "N.", "b", "\x80\x04N.", "c", "\x80\x04N.").Err(); err != nil {
		t.Fatal(err)
	}
	got, removed, err := s.MeasureDropping(ctx, []string{"N.", "\x80\x04N."})
	if err != nil {
		t.Fatal(err)
	}
	if removed != 3 || got.Backlog != 3 || got.Ready != 3 {
		t.Fatalf("removed %d, backlog %d, ready %d; want 3, 3, 3", removed, got.Backlog, got.Ready)
	}
	left, err := rdb.LRange(ctx, key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(left, ",") != "a,b,c" {
		t.Fatalf("list after = %q, want a,b,c", left)
	}
	stream := queue(t, c, redis.QueueRef{Key: "stream-" + t.Name(), Group: "g"}).(dropper)
	if err := rdb.XGroupCreateMkStream(ctx, "stream-"+t.Name(), "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if _, removed, err := stream.MeasureDropping(ctx, []string{"N."}); err != nil || removed != 0 {
		t.Fatalf("stream: removed %d, err %v; want 0, nil", removed, err)
	}
}

func TestStreamBacklog(t *testing.T) {
	c, rdb := newClient(t, configFor(t, sharedAddr))
	ctx := context.Background()
	key, group := "stream-"+t.Name(), "workers"
	if err := rdb.XGroupCreateMkStream(ctx, key, group, "$").Err(); err != nil {
		t.Fatal(err)
	}
	s := queue(t, c, redis.QueueRef{Key: key, Group: group})
	var delivered []string
	steps := []struct {
		name            string
		do              func() error
		ready, inFlight int64
	}{
		{"create group", func() error { return nil }, 0, 0},
		{"XADD 5", func() error {
			for i := range 5 {
				if err := rdb.XAdd(ctx, &goredis.XAddArgs{Stream: key, Values: []string{"n", strconv.Itoa(i)}}).Err(); err != nil {
					return err
				}
			}
			return nil
		}, 5, 0},
		{"XREADGROUP 2", func() error {
			res, err := rdb.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: group, Consumer: "w1", Streams: []string{key, ">"}, Count: 2, Block: -1}).Result()
			if err != nil {
				return err
			}
			for _, m := range res[0].Messages {
				delivered = append(delivered, m.ID)
			}
			return nil
		}, 3, 2},
		{"XACK 1", func() error { return rdb.XAck(ctx, key, group, delivered[0]).Err() }, 3, 1},
		{"XACK 1 more", func() error { return rdb.XAck(ctx, key, group, delivered[1]).Err() }, 3, 0},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		wantCounts(t, st.name, measure(t, s), st.ready, st.inFlight)
	}
}

func TestStreamErrors(t *testing.T) {
	c, rdb := newClient(t, configFor(t, sharedAddr))
	ctx := context.Background()
	key := "stream-" + t.Name()
	if err := rdb.XGroupCreateMkStream(ctx, key, "workers", "$").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.LPush(ctx, "list-"+t.Name(), "x").Err(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		ref  redis.QueueRef
		want string
	}{
		{"group missing", redis.QueueRef{Key: key, Group: "nobody"}, `consumer group "nobody" not found`},
		{"stream missing", redis.QueueRef{Key: "no-such-stream", Group: "workers"}, `XINFO GROUPS "no-such-stream"`},
		{"list read as stream", redis.QueueRef{Key: "list-" + t.Name(), Group: "workers"}, "WRONGTYPE"},
		{"stream read as list", redis.QueueRef{Key: key}, "WRONGTYPE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := queue(t, c, tc.ref).Measure(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Measure error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestBrokerStopped checks that a dead server gives an error, never a zero
// sample the controller could scale down on.
func TestBrokerStopped(t *testing.T) {
	env := testenv.New(t, testenv.Options{Redis: true})
	c, err := redis.New(context.Background(), configFor(t, env.RedisAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	for _, ref := range []redis.QueueRef{{Key: "q"}, {Key: "s", Group: "g"}} {
		s, err := c.Queue(ref)
		if err != nil {
			t.Fatal(err)
		}
		if ref.Group == "" {
			if _, err := s.Measure(context.Background()); err != nil {
				t.Fatalf("Measure before stop: %v", err)
			}
		}
		env.Stop()
		got, err := s.Measure(context.Background())
		if err == nil {
			t.Fatalf("Measure %+v after the broker stopped = %+v, want an error", ref, got)
		}
		if !strings.Contains(err.Error(), strconv.Quote(ref.Key)) {
			t.Errorf("error %q does not name the key %q", err, ref.Key)
		}
	}
}

func TestWatchWakesOnEnqueue(t *testing.T) {
	cfg := configFor(t, sharedAddr)
	cfg.KeyspaceNotifications = true
	c, rdb := newClient(t, cfg)
	ctx := context.Background()
	cases := []struct {
		name    string
		ref     redis.QueueRef
		enqueue func(key string) error
	}{
		{"list LPUSH", redis.QueueRef{Key: "watch-list"}, func(k string) error { return rdb.LPush(ctx, k, "x").Err() }},
		{"stream XADD", redis.QueueRef{Key: "watch-stream", Group: "g"}, func(k string) error {
			return rdb.XAdd(ctx, &goredis.XAddArgs{Stream: k, Values: []string{"a", "b"}}).Err()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := queue(t, c, tc.ref)
			wctx, cancel := context.WithCancel(ctx)
			wake := make(chan struct{}, 1)
			done := make(chan error, 1)
			go func() { done <- s.(source.Pusher).Watch(wctx, wake) }()
			// The first wake says the subscription is in place.
			waitWake(t, wake, done, "subscription")
			if err := tc.enqueue(tc.ref.Key); err != nil {
				t.Fatal(err)
			}
			waitWake(t, wake, done, "enqueue")
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Watch after cancel = %v, want nil", err)
			}
		})
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

func TestWatchFailsWhenNotificationsOff(t *testing.T) {
	env := testenv.New(t, testenv.Options{Redis: true})
	c, err := redis.New(context.Background(), configFor(t, env.RedisAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	s, _ := c.Queue(redis.QueueRef{Key: "q"})
	err = s.(source.Pusher).Watch(context.Background(), make(chan struct{}, 1))
	if err == nil || !strings.Contains(err.Error(), "KeyspaceNotifications") {
		t.Fatalf("Watch = %v, want an error pointing at KeyspaceNotifications", err)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  redis.Config
		want string // "" means valid
	}{
		{"minimal", redis.Config{Host: "redis"}, ""},
		{"full", redis.Config{Host: "redis", Port: 6380, DB: 3, Username: "u", Password: "p", TLS: brokerconn.TLS{Enabled: true, ServerName: "r"}}, ""},
		{"no host", redis.Config{}, "host is required"},
		{"port too big", redis.Config{Host: "h", Port: 70000}, "port 70000"},
		{"negative port", redis.Config{Host: "h", Port: -1}, "port -1"},
		{"negative db", redis.Config{Host: "h", DB: -2}, "db -2"},
		{"negative dial timeout", redis.Config{Host: "h", DialTimeout: -time.Second}, "dialTimeout"},
		{"tls options without tls", redis.Config{Host: "h", TLS: brokerconn.TLS{InsecureSkipVerify: true}}, "tls.enabled is false"},
		{"bad CA", redis.Config{Host: "h", TLS: brokerconn.TLS{Enabled: true, CAPEM: []byte("nope")}}, "caPEM"},
		{"cert without key", redis.Config{Host: "h", TLS: brokerconn.TLS{Enabled: true, CertPEM: []byte("x")}}, "certPEM and keyPEM"},
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
		})
	}
}

func TestParseQueueRef(t *testing.T) {
	cases := []struct {
		in      string
		want    redis.QueueRef
		wantErr bool
	}{
		{"tasks", redis.QueueRef{Key: "tasks"}, false},
		{"jobs:high/eu", redis.QueueRef{Key: "jobs:high/eu"}, false},
		{"events?group=workers", redis.QueueRef{Key: "events", Group: "workers"}, false},
		{"", redis.QueueRef{}, true},
		{"events?group=", redis.QueueRef{Key: "events"}, true},
		{"?group=g", redis.QueueRef{Group: "g"}, true},
	}
	for _, tc := range cases {
		got, err := redis.ParseQueueRef(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseQueueRef(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestCredentialsNeverShown checks that a password appears neither in a
// printed Config nor in a connection error.
func TestCredentialsNeverShown(t *testing.T) {
	const pw = "hunter2-very-secret"
	cfg := configFor(t, sharedAddr)
	cfg.Username, cfg.Password = "nobody", pw
	for _, s := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
		if strings.Contains(s, pw) {
			t.Fatalf("printed config shows the password: %s", s)
		}
	}
	_, err := redis.New(context.Background(), cfg)
	if err == nil {
		t.Fatal("New with a wrong user and password succeeded")
	}
	if strings.Contains(err.Error(), pw) {
		t.Fatalf("error shows the password: %v", err)
	}
}

func BenchmarkMeasure(b *testing.B) {
	c, rdb := newClient(b, configFor(b, sharedAddr))
	ctx := context.Background()
	for _, ref := range []redis.QueueRef{{Key: "bench-list"}, {Key: "bench-stream", Group: "g"}} {
		if ref.Group != "" {
			if err := rdb.XGroupCreateMkStream(ctx, ref.Key, ref.Group, "0").Err(); err != nil {
				b.Fatal(err)
			}
		}
		s := queue(b, c, ref)
		name := "list"
		if ref.Group != "" {
			name = "stream"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Measure(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestStreamOldestAge stamps entries with IDs the given seconds before the
// server's clock and checks the age follows the first undelivered entry:
// delivered (pending) entries are being served, not waiting.
func TestStreamOldestAge(t *testing.T) {
	c, rdb := newClient(t, configFor(t, sharedAddr))
	ctx := context.Background()
	key, group := "stream-"+t.Name(), "workers"
	if err := rdb.XGroupCreateMkStream(ctx, key, group, "$").Err(); err != nil {
		t.Fatal(err)
	}
	s := queue(t, c, redis.QueueRef{Key: key, Group: group})
	if got := measure(t, s); got.OldestAge != 0 {
		t.Fatalf("empty stream: OldestAge %v, want 0 (nothing waiting)", got.OldestAge)
	}
	serverNow, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, back := range []int64{30, 20, 10} {
		id := fmt.Sprintf("%d-0", serverNow.UnixMilli()-back*1000)
		if err := rdb.XAdd(ctx, &goredis.XAddArgs{Stream: key, ID: id, Values: []string{"n", "1"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	wantAge := func(step string, min time.Duration) {
		t.Helper()
		got := measure(t, s).OldestAge
		// The lower bound is exact (the entry's ID); the upper one only
		// allows for a slow machine between XADD and Measure.
		if got < min || got > min+time.Minute {
			t.Fatalf("%s: OldestAge %v, want %v (plus the time since XADD)", step, got, min)
		}
	}
	wantAge("3 waiting", 30*time.Second)
	if err := rdb.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: group, Consumer: "w1", Streams: []string{key, ">"}, Count: 1, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	wantAge("oldest delivered", 20*time.Second)
	if err := rdb.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: group, Consumer: "w1", Streams: []string{key, ">"}, Count: 2, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	if got := measure(t, s); got.OldestAge != 0 || got.InFlight != 3 {
		t.Fatalf("all delivered: OldestAge %v (in flight %d), want 0 with 3 in flight", got.OldestAge, got.InFlight)
	}
	// A producer-chosen ID in the future is no timestamp: unknown, not negative.
	future := fmt.Sprintf("%d-0", serverNow.UnixMilli()+3600_000)
	if err := rdb.XAdd(ctx, &goredis.XAddArgs{Stream: key, ID: future, Values: []string{"n", "1"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if got := measure(t, s); got.OldestAge != 0 || got.Ready != 1 {
		t.Fatalf("future ID: OldestAge %v (ready %d), want 0 with 1 ready", got.OldestAge, got.Ready)
	}
}

func TestListHasNoOldestAge(t *testing.T) {
	c, rdb := newClient(t, configFor(t, sharedAddr))
	key := "list-" + t.Name()
	if err := rdb.LPush(context.Background(), key, "a", "b").Err(); err != nil {
		t.Fatal(err)
	}
	if got := measure(t, queue(t, c, redis.QueueRef{Key: key})); got.OldestAge != 0 || got.Ready != 2 {
		t.Fatalf("list: OldestAge %v (ready %d), want 0 (a list keeps no timestamps) with 2 ready", got.OldestAge, got.Ready)
	}
}
