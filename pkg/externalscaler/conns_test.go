package externalscaler_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/externalscaler"
)

// redisInfo reads one numeric field of the server's INFO section.
func redisInfo(t testing.TB, rdb *goredis.Client, section, field string) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), section).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			if comma := strings.IndexByte(v, ','); comma >= 0 {
				v = v[:comma]
			}
			n, err := strconv.ParseInt(strings.TrimPrefix(v, "calls="), 10, 64)
			if err != nil {
				t.Fatalf("INFO %s %s: %q: %v", section, field, line, err)
			}
			return n
		}
	}
	return 0
}

func redisSpec(t testing.TB, addr, key string, db int) *externalscaler.Spec {
	t.Helper()
	spec, err := (&externalscaler.Parser{}).Parse(map[string]string{"source": "redis", "address": addr, "listName": key, "databaseIndex": strconv.Itoa(db)})
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func expectBacklog(ctx context.Context, t *testing.T, tr *externalscaler.Tracker, spec *externalscaler.Spec, want float64) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		r, err := tr.Read(ctx, spec)
		if err != nil {
			return err
		}
		if got := r.Values["backlog"]; got != want {
			return fmt.Errorf("%s: backlog %v, want %v", spec.Key, got, want)
		}
		return nil
	})
}

// TestTargetsShareBrokerClients: twenty lists of one Redis database are
// measured through one client and a list of another database through a
// second (the server sees a handful of connections, not twenty-one); a
// target going idle leaves the client to the others, and the last one
// closes it.
func TestTargetsShareBrokerClients(t *testing.T) {
	env := testenv.New(t, testenv.Options{Redis: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rdb := goredis.NewClient(&goredis.Options{Addr: env.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	baseline := redisInfo(t, rdb, "clients", "connected_clients")

	tr := externalscaler.NewTracker(externalscaler.TrackerOptions{Interval: 250 * time.Millisecond, PollTimeout: 5 * time.Second, IdleTimeout: 3 * time.Second})
	t.Cleanup(tr.Close)
	var specs []*externalscaler.Spec
	for i := range 20 {
		key := fmt.Sprintf("shared-%d", i)
		for range i {
			rdb.LPush(ctx, key, "task")
		}
		specs = append(specs, redisSpec(t, env.RedisAddr, key, 0))
	}
	specs = append(specs, redisSpec(t, env.RedisAddr, "shared-0", 1))
	for i, s := range specs {
		expectBacklog(ctx, t, tr, s, float64(i%20))
	}
	conns := redisInfo(t, rdb, "clients", "connected_clients") - baseline
	t.Logf("21 targets: %d clients, %d server connections", tr.Connections(), conns)
	if tr.Connections() != 2 {
		t.Fatalf("21 targets on two databases hold %d clients, want 2", tr.Connections())
	}
	// Each client's pool holds a few connections; one per target would be 21.
	if conns > 2*4 {
		t.Fatalf("the server sees %d connections from 2 shared clients, want at most 8", conns)
	}

	// Only shared-5 stays in use: the others expire, their client stays
	// open for it and measures a change.
	kept := specs[5]
	rdb.LPush(ctx, "shared-5", "one more")
	eventually(t, 30*time.Second, func() error {
		if _, err := tr.Read(ctx, kept); err != nil {
			return err
		}
		if n := tr.Len(); n != 1 {
			return fmt.Errorf("%d targets tracked, want 1", n)
		}
		return nil
	})
	if tr.Connections() != 1 {
		t.Fatalf("one target left holds %d clients, want 1", tr.Connections())
	}
	expectBacklog(ctx, t, tr, kept, 6)

	// Nobody asks any more: the last target expires and closes the client.
	eventually(t, 30*time.Second, func() error {
		if n, c := tr.Len(), tr.Connections(); n != 0 || c != 0 {
			return fmt.Errorf("%d targets, %d clients after everyone left; want 0 and 0", n, c)
		}
		if n := redisInfo(t, rdb, "clients", "connected_clients"); n != baseline {
			return fmt.Errorf("server has %d connections, want %d (the test's own)", n, baseline)
		}
		return nil
	})
}

// TestPushPollsThrottled: a list receiving a message every few
// milliseconds notifies on each; polls follow at most one per PushGap (the
// regular interval is an hour), where an unthrottled tracker polls far
// more often. The last message is still measured.
func TestPushPollsThrottled(t *testing.T) {
	env := testenv.New(t, testenv.Options{Redis: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rdb := goredis.NewClient(&goredis.Options{Addr: env.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.ConfigSet(ctx, "notify-keyspace-events", "Kl").Err(); err != nil {
		t.Fatal(err)
	}
	const busy = 3 * time.Second
	cases := []struct {
		name     string
		gap      time.Duration
		maxPolls int64
		minPolls int64
	}{
		// busy/gap polls, plus the first and one after the last message.
		{"throttled", 500 * time.Millisecond, int64(busy/(500*time.Millisecond)) + 3, 2},
		{"unthrottled", time.Nanosecond, 1 << 40, int64(busy/(500*time.Millisecond)) + 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := "busy-" + tc.name
			tr := externalscaler.NewTracker(externalscaler.TrackerOptions{Interval: time.Hour, PushGap: tc.gap})
			defer tr.Close()
			spec := redisSpec(t, env.RedisAddr, key, 0)
			before := redisInfo(t, rdb, "commandstats", "cmdstat_llen")
			expectBacklog(ctx, t, tr, spec, 0)
			var sent float64
			for end := time.Now().Add(busy); time.Now().Before(end); sent++ {
				if err := rdb.LPush(ctx, key, "task").Err(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			expectBacklog(ctx, t, tr, spec, sent)
			polls := redisInfo(t, rdb, "commandstats", "cmdstat_llen") - before
			t.Logf("%.0f messages in %s, push gap %s: %d polls", sent, busy, tc.gap, polls)
			if polls > tc.maxPolls || polls < tc.minPolls {
				t.Fatalf("%d polls, want %d..%d", polls, tc.minPolls, tc.maxPolls)
			}
		})
	}
}
