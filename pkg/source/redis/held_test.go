package redis_test

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/swell-autoscaler/swell/pkg/source/redis"
	"github.com/swell-autoscaler/swell/pkg/source/redis/reliable"
)

// TestListCountsTasksOfDeadWorkers: tasks in the processing lists of SDK
// workers whose heartbeat expired, and tasks waiting out a retry backoff,
// are backlog (a pool at zero must wake up for them); a live worker's task
// is not, and Owner keeps one QWorker from counting another's.
func TestListCountsTasksOfDeadWorkers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, rdb := newClient(t, configFor(t, sharedAddr))
	const key = "held-jobs"
	hold := func(owner, pod string, alive bool, n int) string {
		m := reliable.Member(owner, pod)
		rdb.SAdd(ctx, reliable.Registry(key), m)
		for range n {
			rdb.LPush(ctx, reliable.Processing(key, m), "task")
		}
		if alive {
			rdb.Set(ctx, reliable.Heartbeat(key, m), pod, time.Minute)
		}
		return m
	}
	for range 4 {
		rdb.LPush(ctx, key, "waiting")
	}
	dead := hold("ns1/qw", "gone", false, 2)
	hold("ns1/qw", "busy", true, 1)
	hold("ns2/qw", "gone", false, 3)
	rdb.ZAdd(ctx, reliable.Delayed(key), goredis.Z{Score: float64(time.Now().Add(time.Hour).UnixMilli()), Member: "1:retry"})

	cases := []struct {
		owner              string
		backlog, ready     int64
		afterBeat, readyAB int64 // once ns1/qw's dead worker beats again
	}{
		{owner: "", backlog: 4 + 2 + 3 + 1, ready: 4 + 2 + 3, afterBeat: 4 + 3 + 1, readyAB: 4 + 3},
		{owner: "ns1/qw", backlog: 4 + 2 + 1, ready: 4 + 2, afterBeat: 4 + 1, readyAB: 4},
		{owner: "ns2/qw", backlog: 4 + 3 + 1, ready: 4 + 3, afterBeat: 4 + 3 + 1, readyAB: 4 + 3},
	}
	measure := func(owner string) (int64, int64) {
		t.Helper()
		s, err := queue(t, c, redis.QueueRef{Key: key, Owner: owner}).Measure(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s.Backlog, s.Ready
	}
	for _, tc := range cases {
		if b, r := measure(tc.owner); b != tc.backlog || r != tc.ready {
			t.Errorf("owner %q: backlog %d ready %d, want %d and %d", tc.owner, b, r, tc.backlog, tc.ready)
		}
	}
	rdb.Set(ctx, reliable.Heartbeat(key, dead), "gone", time.Minute)
	for _, tc := range cases {
		if b, r := measure(tc.owner); b != tc.afterBeat || r != tc.readyAB {
			t.Errorf("owner %q with the worker alive: backlog %d ready %d, want %d and %d", tc.owner, b, r, tc.afterBeat, tc.readyAB)
		}
	}
}
