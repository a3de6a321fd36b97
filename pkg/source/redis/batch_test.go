package redis_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/redis"
	"github.com/swell-autoscaler/swell/pkg/source/sourcetest"
)

// commandCalls reads a command's call count from the server's INFO
// commandstats ("config|get", "llen", "evalsha"...); 0 when never called.
func commandCalls(t testing.TB, rdb *goredis.Client, cmd string) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
		if err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
		return n
	}
	return 0
}

// fillLists makes n lists prefix-0..prefix-(n-1), list i holding i%7
// elements, and returns their keys.
func fillLists(t testing.TB, rdb *goredis.Client, prefix string, n int) []string {
	t.Helper()
	ctx := context.Background()
	keys := make([]string, n)
	p := rdb.Pipeline()
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-%d", prefix, i)
		p.Del(ctx, keys[i])
		for range i % 7 {
			p.LPush(ctx, keys[i], "task")
		}
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	return keys
}

// listSources makes a Client with the given batch window and a source
// per list key.
func listSources(t testing.TB, window time.Duration, keys []string) (*redis.Client, []source.Source) {
	t.Helper()
	cfg := configFor(t, sharedAddr)
	cfg.BatchWindow = window
	c, _ := newClient(t, cfg)
	srcs := make([]source.Source, len(keys))
	for i, k := range keys {
		srcs[i] = queue(t, c, redis.QueueRef{Key: k})
	}
	return c, srcs
}

// measureAll measures every source at once (released together) and
// returns the samples in order.
func measureAll(t testing.TB, srcs []source.Source) []source.Sample {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, errs := sourcetest.MeasureAll(ctx, srcs)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Measure of queue %d: %v", i, err)
		}
	}
	return out
}

// TestMeasurementsShareRoundTrips: a thousand queues of one Client measured
// at the same moment go to Redis in a few pipelines (one LLEN each, every
// result its own queue's), where measuring each alone costs a round trip
// per queue.
func TestMeasurementsShareRoundTrips(t *testing.T) {
	const n = 1000
	_, rdb := newClient(t, configFor(t, sharedAddr))
	keys := fillLists(t, rdb, "batched", n)
	cases := []struct {
		name          string
		window        time.Duration
		maxRoundTrips int64
	}{
		// Goroutines released together all start within the window on a
		// busy machine; a few batches at most.
		{"batched", 200 * time.Millisecond, 10},
		{"alone", -1, n},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, srcs := listSources(t, tc.window, keys)
			if err := rdb.ConfigResetStat(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
			samples := measureAll(t, srcs)
			for i, s := range samples {
				if want := int64(i % 7); s.Backlog != want || s.Ready != want {
					t.Fatalf("queue %s: backlog %d ready %d, want %d", keys[i], s.Backlog, s.Ready, want)
				}
			}
			st := c.Stats()
			llen := commandCalls(t, rdb, "llen")
			t.Logf("%d queues measured at once, window %s: %d round trips, %d LLEN on the server", n, tc.window, st.RoundTrips, llen)
			if st.Measurements != n || llen != n {
				t.Fatalf("measurements %d, server LLEN calls %d; want %d each", st.Measurements, llen, n)
			}
			if st.RoundTrips > tc.maxRoundTrips || st.RoundTrips < 1 {
				t.Fatalf("%d round trips for %d measurements, want 1..%d", st.RoundTrips, n, tc.maxRoundTrips)
			}
		})
	}
}

// TestMeasureAfterScriptFlush: a server that lost its scripts (restart,
// SCRIPT FLUSH) gets them again in the same measurement.
func TestMeasureAfterScriptFlush(t *testing.T) {
	c, rdb := newClient(t, configFor(t, sharedAddr))
	keys := fillLists(t, rdb, "flushed", 5)
	for _, drop := range []bool{false, true} {
		if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		s := queue(t, c, redis.QueueRef{Key: keys[4]})
		if drop {
			got, dropped, err := s.(interface {
				MeasureDropping(context.Context, []string) (source.Sample, int64, error)
			}).MeasureDropping(context.Background(), []string{"task"})
			if err != nil || dropped != 4 || got.Backlog != 0 {
				t.Fatalf("MeasureDropping after SCRIPT FLUSH = %+v, dropped %d, %v; want backlog 0, 4 dropped", got, dropped, err)
			}
			continue
		}
		wantCounts(t, "SCRIPT FLUSH", measure(t, s), 4, 0)
	}
}

// TestNotificationSettingReadOncePerRecheck: a hundred queues whose Watch
// keeps failing (notifications off) ask the server for
// notify-keyspace-events once per recheck period, not once per attempt;
// turning notifications on is seen after the period.
func TestNotificationSettingReadOncePerRecheck(t *testing.T) {
	env := testenv.New(t, testenv.Options{Redis: true})
	clk := clocktesting.NewFakePassiveClock(time.Now())
	cfg := configFor(t, env.RedisAddr)
	cfg.Clock, cfg.NotifyRecheck = clk, time.Minute
	c, err := redis.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	rdb := goredis.NewClient(&goredis.Options{Addr: env.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()

	pushers := make([]source.Pusher, 100)
	for i := range pushers {
		pushers[i] = queue(t, c, redis.QueueRef{Key: fmt.Sprintf("q%d", i)}).(source.Pusher)
	}
	// A failing Watch returns at once; a working one holds until its
	// context ends, so one queue shows it works (its subscription opens a
	// connection, after which the setting is read anew).
	watchAll := func(step string, wantOn bool) {
		t.Helper()
		ps, rounds := pushers, 3
		if wantOn {
			ps, rounds = pushers[:1], 1
		}
		for range rounds {
			for i, p := range ps {
				wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				err := p.Watch(wctx, make(chan struct{}, 1))
				cancel()
				if on := err == nil; on != wantOn {
					t.Fatalf("%s: Watch of queue %d = %v, want notifications on: %t", step, i, err, wantOn)
				}
			}
		}
	}
	configGets := func() int64 { return commandCalls(t, rdb, "config|get") }
	before := configGets()
	watchAll("notifications off", false)
	if got := configGets() - before; got != 1 {
		t.Fatalf("300 failing Watch calls sent %d CONFIG GETs, want 1", got)
	}
	// The server is configured now; the cached read is trusted until the
	// recheck period ends.
	if err := rdb.ConfigSet(ctx, "notify-keyspace-events", "Kl").Err(); err != nil {
		t.Fatal(err)
	}
	watchAll("within the recheck period", false)
	clk.SetTime(clk.Now().Add(time.Minute))
	watchAll("after the recheck period", true)
	if got := configGets() - before; got != 2 {
		t.Fatalf("601 Watch calls over two recheck periods sent %d CONFIG GETs, want 2", got)
	}
	if st := c.Stats(); st.NotifyReads != 2 {
		t.Fatalf("Stats().NotifyReads = %d, want 2", st.NotifyReads)
	}
}

// BenchmarkMeasure1000Queues measures 1,000 lists of one Client at once,
// batched (the default window) and each alone, reporting Redis round trips
// per 1,000 measurements.
func BenchmarkMeasure1000Queues(b *testing.B) {
	const n = 1000
	_, rdb := newClient(b, configFor(b, sharedAddr))
	keys := fillLists(b, rdb, "bench-batch", n)
	for _, bc := range []struct {
		name   string
		window time.Duration
	}{{"batched", 0}, {"alone", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			c, srcs := listSources(b, bc.window, keys)
			ops := 0
			for b.Loop() {
				measureAll(b, srcs)
				ops++
			}
			b.ReportMetric(float64(c.Stats().RoundTrips)/float64(ops), "roundtrips/op")
		})
	}
}
