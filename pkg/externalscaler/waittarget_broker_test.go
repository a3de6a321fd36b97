package externalscaler

import (
	"context"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/policy/waittime"
)

// TestQueueWaitOnRealRedis measures a real Redis stream through a wait
// target's probe at two chosen instants: the growth between them, the
// in-flight count and the oldest entry's age (stamped 60 s back) reach the
// model, and the wait metric is the model's answer for them.
func TestQueueWaitOnRealRedis(t *testing.T) {
	env := testenv.New(t, testenv.Options{Redis: true})
	ctx := context.Background()
	rdb := goredis.NewClient(&goredis.Options{Addr: env.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	const key, group = "orders", "workers"
	if err := rdb.XGroupCreateMkStream(ctx, key, group, "$").Err(); err != nil {
		t.Fatal(err)
	}
	spec, err := (&Parser{}).Parse(map[string]string{"source": "redis", "address": env.RedisAddr, "stream": key, "consumerGroup": group,
		"targetWaitSeconds": "5", "serviceTimeSeconds": "1"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := spec.target.open(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	serverNow, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	add := func(n int, base time.Time) {
		for i := range n {
			id := fmt.Sprintf("%d-%d", base.UnixMilli(), i)
			if err := rdb.XAdd(ctx, &goredis.XAddArgs{Stream: key, ID: id, Values: []string{"n", "1"}}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(4, serverNow.Add(-time.Minute))
	// Two of them are taken by a worker (in flight).
	if err := rdb.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: group, Consumer: "w", Streams: []string{key, ">"}, Count: 2, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(5000, 0)
	r, err := p.measure(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := spec.withWait(r); err == nil {
		t.Fatalf("first poll answered %v; want Unavailable until a growth is seen", r.Values)
	}
	add(6, serverNow)
	r, err = p.measure(ctx, t0.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	age := r.Values[fieldOldestAge]
	if r.Values[fieldGrowth] != 3 || r.Values["ready"] != 8 || r.Values["inFlight"] != 2 || age < 60 || age > 120 {
		t.Fatalf("second poll: %v, want growth 3/s (6 in 2 s), 8 ready, 2 in flight, age ≥ 60 s", r.Values)
	}
	got, err := spec.withWait(r)
	if err != nil {
		t.Fatal(err)
	}
	want := waittime.Replicas(waittime.Inputs{ArrivalRate: 3 + r.Values[fieldBusy], ServiceTime: time.Second, Concurrency: 1,
		Backlog: 8, InFlight: 2, OldestAge: time.Duration(age * float64(time.Second))}, waittime.Target{Wait: 5 * time.Second})
	if got.Values[fieldWaitReplicas] != float64(want.Replicas) || want.DrainSlots != 8 {
		t.Fatalf("wait metric %v, want %d (%s) with all 8 waiting started at once (the head is late)", got.Values[fieldWaitReplicas], want.Replicas, want.Reason)
	}
	t.Logf("wait metric %v: %s", got.Values[fieldWaitReplicas], want.Reason)
}
