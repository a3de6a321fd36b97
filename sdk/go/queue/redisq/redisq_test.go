package redisq

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/source/redis/reliable"
	"github.com/swell-autoscaler/swell/sdk/go/worker/queuetest"
)

func newRedis(t *testing.T) *redis.Client {
	t.Helper()
	env := testenv.New(t, testenv.Options{Redis: true})
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(ctx context.Context, t *testing.T, rdb *redis.Client, queue string, o Options) *Queue {
	t.Helper()
	o.Logger = quiet
	q, err := Open(ctx, rdb, queue, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", o.Pod, err)
	}
	t.Cleanup(func() { _ = q.Close(context.Background()) })
	return q
}

func TestOptionsNameTheBadField(t *testing.T) {
	for name, tc := range map[string]struct {
		o    Options
		want string
	}{
		"no owner":       {o: Options{Pod: "p"}, want: "owner"},
		"owner no slash": {o: Options{Owner: "ns", Pod: "p"}, want: "owner"},
		"no pod":         {o: Options{Owner: "ns/qw"}, want: "pod"},
		"short ttl":      {o: Options{Owner: "ns/qw", Pod: "p", HeartbeatTTL: time.Second}, want: "heartbeatTTL"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tc.o.withDefaults()
			if err == nil || !contains(err.Error(), tc.want) {
				t.Fatalf("withDefaults() = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestTakeAckReturn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := newRedis(t)
	for i := range 3 {
		rdb.LPush(ctx, "tasks", fmt.Sprintf("t%d", i)) // QScaler producers LPUSH
	}
	q := open(ctx, t, rdb, "tasks", Options{Owner: "ns/qw", Pod: "pod-a", Backoff: -1})
	held := ProcessingKey("tasks", reliable.Member("ns/qw", "pod-a"))

	d, err := q.Take(ctx)
	if err != nil || d == nil {
		t.Fatalf("Take = %v, %v", d, err)
	}
	if string(d.Body()) != "t0" {
		t.Fatalf("took %q first, want the oldest t0", d.Body())
	}
	if n := rdb.LLen(ctx, held).Val(); n != 1 {
		t.Fatalf("processing list holds %d tasks, want 1", n)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if n := rdb.LLen(ctx, held).Val(); n != 0 {
		t.Fatalf("processing list holds %d tasks after ack, want 0", n)
	}
	d, _ = q.Take(ctx)
	if err := d.Return(ctx); err != nil {
		t.Fatal(err)
	}
	again, _ := q.Take(ctx)
	if string(again.Body()) != "t1" {
		t.Fatalf("after a hand-back (no backoff) took %q, want t1 again", again.Body())
	}
	if got := rdb.HGet(ctx, reliable.Attempts("tasks"), bodyHash("t1")).Val(); got != "1" {
		t.Fatalf("attempts of t1 = %q, want 1", got)
	}
	if err := again.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if n := rdb.HLen(ctx, reliable.Attempts("tasks")).Val(); n != 0 {
		t.Fatalf("attempts hash holds %d entries after the ack, want 0", n)
	}
}

// TestRecovery: tasks of a dead worker of the same QWorker come back (after
// its heartbeat has been missing for a TTL), a live worker's and another
// QWorker's stay, and a restarted pod gets its own list back at once.
func TestRecovery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rdb := newRedis(t)
	const ttl = 3 * time.Second
	put := func(owner, pod string, beat bool, bodies ...string) {
		m := reliable.Member(owner, pod)
		rdb.SAdd(ctx, reliable.Registry("q"), m)
		for _, b := range bodies {
			rdb.LPush(ctx, reliable.Processing("q", m), b)
		}
		if beat {
			rdb.Set(ctx, reliable.Heartbeat("q", m), pod, time.Minute)
		}
	}
	put("ns1/qw", "dead", false, "d1", "d2")
	put("ns1/qw", "alive", true, "a1")
	put("ns2/qw", "other", false, "o1") // another namespace's QWorker, dead too
	put("ns1/qw", "me", true, "m1")     // this pod's previous container

	q := open(ctx, t, rdb, "q", Options{Owner: "ns1/qw", Pod: "me", HeartbeatTTL: ttl})
	queued := func() []string { return rdb.LRange(ctx, "q", 0, -1).Val() }
	if got := queued(); len(got) != 1 || got[0] != "m1" {
		t.Fatalf("queue after Open = %v, want only [m1] (own list at once; the dead worker waits a TTL)", got)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(queued()) < 3 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	got := queued()
	if len(got) != 3 {
		t.Fatalf("queue = %v, want m1, d1, d2", got)
	}
	for key, want := range map[string]int64{
		reliable.Processing("q", reliable.Member("ns1/qw", "alive")): 1,
		reliable.Processing("q", reliable.Member("ns2/qw", "other")): 1,
		reliable.Processing("q", reliable.Member("ns1/qw", "dead")):  0,
	} {
		if n := rdb.LLen(ctx, key).Val(); n != want {
			t.Errorf("%s holds %d, want %d", key, n, want)
		}
	}
	if rdb.SIsMember(ctx, reliable.Registry("q"), reliable.Member("ns1/qw", "dead")).Val() {
		t.Error("the dead worker is still registered after its list was recovered")
	}
	if c := q.Counters(); c.Recovered != 3 {
		t.Errorf("Counters().Recovered = %d, want 3", c.Recovered)
	}
}

// TestPoisonTaskIsDeadLettered: a task failing MaxAttempts times lands in
// "<queue>:dead" after backoffs; the other tasks are done.
func TestPoisonTaskIsDeadLettered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rdb := newRedis(t)
	for i := range 20 {
		rdb.LPush(ctx, "jobs", fmt.Sprintf("ok-%d", i))
	}
	rdb.LPush(ctx, "jobs", "poison")
	q := open(ctx, t, rdb, "jobs", Options{Owner: "ns/qw", Pod: "p", MaxAttempts: 3, Backoff: 100 * time.Millisecond})
	done, handled := map[string]int{}, 0
	for len(done) < 20 || rdb.LLen(ctx, reliable.Dead("jobs")).Val() == 0 {
		tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
		d, err := q.Take(tctx)
		tcancel()
		if err != nil || d == nil {
			t.Fatalf("Take = %v, %v (done %d)", d, err, len(done))
		}
		handled++
		if string(d.Body()) == "poison" {
			if err := d.Return(ctx); err != nil {
				t.Fatal(err)
			}
			continue
		}
		done[string(d.Body())]++
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := rdb.LRange(ctx, reliable.Dead("jobs"), 0, -1).Val(); len(got) != 1 || got[0] != "poison" {
		t.Fatalf("dead list = %v, want [poison]", got)
	}
	if handled != 23 {
		t.Fatalf("handled %d deliveries, want 20 + 3 attempts of the poison", handled)
	}
	c := q.Counters()
	if c.DeadLettered != 1 || c.Retried != 2 {
		t.Fatalf("Counters = %+v, want 1 dead-lettered, 2 retried", c)
	}
	for body, n := range done {
		if n != 1 {
			t.Errorf("%s done %d times", body, n)
		}
	}
}

// TestFailedAckIsRetried: an ack that fails while Redis does not answer is
// retried in the background, so the task leaves the processing list.
func TestFailedAckIsRetried(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := testenv.New(t, testenv.Options{Redis: true})
	// The ack must give up at its context's deadline, as under an outage.
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	rdb.LPush(ctx, "q", "task")
	q := open(ctx, t, rdb, "q", Options{Owner: "ns/qw", Pod: "p"})
	d, err := q.Take(ctx)
	if err != nil || d == nil {
		t.Fatalf("Take = %v, %v", d, err)
	}
	// Redis holds every write for 2 s: the ack times out, as in an outage.
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", 2000, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err = d.Ack(actx)
	acancel()
	if err == nil {
		t.Fatal("Ack during the pause succeeded; the test needs it to fail")
	}
	held := ProcessingKey("q", reliable.Member("ns/qw", "p"))
	deadline := time.Now().Add(20 * time.Second)
	for rdb.LLen(ctx, held).Val() != 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if n := rdb.LLen(ctx, held).Val(); n != 0 {
		t.Fatalf("processing list holds %d after Redis answered again, want 0 (ack retried)", n)
	}
	if c := q.Counters(); c.SettleRetries != 1 {
		t.Fatalf("Counters().SettleRetries = %d, want 1", c.SettleRetries)
	}
}

func TestTakeReturnsNilWhenCancelled(t *testing.T) {
	rdb := newRedis(t)
	q := open(context.Background(), t, rdb, "empty", Options{Owner: "ns/qw", Pod: "pod"})
	queuetest.EmptyTakeGivesNil(t, q, 200*time.Millisecond)
}

// TestTakeAfterTheClientClosed: a closed client is reported as a queue
// that cannot deliver again, so worker.Run stops instead of retrying.
func TestTakeAfterTheClientClosed(t *testing.T) {
	rdb := newRedis(t)
	q, err := Open(context.Background(), rdb, "tasks", Options{Owner: "ns/qw", Pod: "pod-a", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	queuetest.ClosedTakeFails(t, q, func() { _ = rdb.Close() })
}
