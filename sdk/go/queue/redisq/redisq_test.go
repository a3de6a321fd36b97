package redisq

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/sdk/go/worker/queuetest"
)

func newRedis(t *testing.T) *redis.Client {
	t.Helper()
	env := testenv.New(t, testenv.Options{Redis: true})
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func TestTakeAckReturnAndRecover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := newRedis(t)
	for i := range 3 {
		rdb.LPush(ctx, "tasks", fmt.Sprintf("t%d", i)) // QScaler producers LPUSH
	}
	q := New(rdb, "tasks", "pod-a")

	d, err := q.Take(ctx)
	if err != nil || d == nil {
		t.Fatalf("Take = %v, %v", d, err)
	}
	if string(d.Body()) != "t0" {
		t.Fatalf("took %q first, want the oldest t0", d.Body())
	}
	if n := rdb.LLen(ctx, ProcessingKey("tasks", "pod-a")).Val(); n != 1 {
		t.Fatalf("processing list holds %d tasks, want 1", n)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if n := rdb.LLen(ctx, ProcessingKey("tasks", "pod-a")).Val(); n != 0 {
		t.Fatalf("processing list holds %d tasks after ack, want 0", n)
	}

	d, _ = q.Take(ctx)
	if err := d.Return(ctx); err != nil {
		t.Fatal(err)
	}
	again, _ := q.Take(ctx)
	if string(again.Body()) != "t1" {
		t.Fatalf("after a hand-back took %q, want t1 again", again.Body())
	}

	// pod-a dies holding t1; pod-b is alive and holds t2.
	qb := New(rdb, "tasks", "pod-b")
	if _, err := qb.Take(ctx); err != nil {
		t.Fatal(err)
	}
	moved, err := Recover(ctx, rdb, "tasks", func(pod string) (bool, error) { return pod == "pod-b", nil })
	if err != nil {
		t.Fatal(err)
	}
	if moved != 1 {
		t.Fatalf("recovered %d tasks, want 1 (pod-a's)", moved)
	}
	got := rdb.LRange(ctx, "tasks", 0, -1).Val()
	if len(got) != 1 || got[0] != "t1" {
		t.Fatalf("queue after recovery = %v, want [t1]", got)
	}
	if n := rdb.LLen(ctx, ProcessingKey("tasks", "pod-b")).Val(); n != 1 {
		t.Fatalf("live pod-b's processing list holds %d, want its 1 task kept", n)
	}
}

func TestTakeReturnsNilWhenCancelled(t *testing.T) {
	rdb := newRedis(t)
	queuetest.EmptyTakeGivesNil(t, New(rdb, "empty", "pod"), 200*time.Millisecond)
}

// TestTakeAfterTheClientClosed: a closed client is reported as a queue
// that cannot deliver again, so worker.Run stops instead of retrying.
func TestTakeAfterTheClientClosed(t *testing.T) {
	rdb := newRedis(t)
	queuetest.ClosedTakeFails(t, New(rdb, "tasks", "pod-a"), func() { _ = rdb.Close() })
}
