package brokersource

import (
	"context"
	"net"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/source"
	redissource "github.com/swell-autoscaler/swell/pkg/source/redis"
	"github.com/swell-autoscaler/swell/pkg/source/redis/reliable"
)

// TestRedisQueueRefOwner: the QWorker reaches the Redis queue reference as
// its Owner, for lists and streams alike; a bad queue string still fails.
func TestRedisQueueRefOwner(t *testing.T) {
	tests := []struct {
		queue, owner string
		want         redissource.QueueRef
		wantErr      bool
	}{
		{"jobs", "ns/a", redissource.QueueRef{Key: "jobs", Owner: "ns/a"}, false},
		{"jobs", "", redissource.QueueRef{Key: "jobs"}, false},
		{"events?group=g", "ns/a", redissource.QueueRef{Key: "events", Group: "g", Owner: "ns/a"}, false},
		{"", "ns/a", redissource.QueueRef{}, true},
	}
	for _, tc := range tests {
		got, err := redisQueueRef(tc.queue, tc.owner)
		if (err != nil) != tc.wantErr {
			t.Fatalf("redisQueueRef(%q, %q) error %v, want error %v", tc.queue, tc.owner, err, tc.wantErr)
		}
		if err == nil && got != tc.want {
			t.Errorf("redisQueueRef(%q, %q) = %+v, want %+v", tc.queue, tc.owner, got, tc.want)
		}
	}
}

// TestQWorkerSourceCountsOnlyItsOwnDeadWorkers, on a real Redis: two
// QWorkers of one namespace share a list, and each had a worker die with
// tasks in its processing list. Each QWorker's source counts the waiting
// tasks plus its own dead worker's, not the other's; a caller that is no
// QWorker (a PodAutoscaler) counts both. Sources stay shared per owner.
func TestQWorkerSourceCountsOnlyItsOwnDeadWorkers(t *testing.T) {
	ctx, host, port, rdb := realRedis(t)
	const key = "shared-jobs"
	for range 2 {
		rdb.LPush(ctx, key, "waiting")
	}
	for owner, held := range map[string]int{"jobs/a": 3, "jobs/b": 5} {
		m := reliable.Member(owner, "gone-pod")
		rdb.SAdd(ctx, reliable.Registry(key), m)
		for range held {
			rdb.LPush(ctx, reliable.Processing(key, m), "task")
		}
	}

	scheme := runtime.NewScheme()
	_ = qv1.AddToScheme(scheme)
	sc := &qv1.ScalerConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "jobs", Name: "redis"},
		Spec: qv1.ScalerConfigSpec{Type: qv1.BrokerRedis, Config: qv1.ScalerConnection{Host: host, Port: port}}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(sc).Build()
	s := NewSources(c, c)
	defer s.Forget(types.NamespacedName{Namespace: "jobs", Name: "redis"})

	sourceFor := func(qworker string) source.Source {
		t.Helper()
		var src source.Source
		var err error
		if qworker == "" {
			src, err = s.Source(ctx, "jobs", "redis", key)
		} else {
			src, err = s.QWorkerSource(ctx, "jobs", "redis", key, qworker)
		}
		if err != nil {
			t.Fatalf("source for %q: %v", qworker, err)
		}
		return src
	}
	cases := []struct {
		name, qworker string
		want          int64
	}{
		{"QWorker a", "a", 2 + 3},
		{"QWorker b", "b", 2 + 5},
		{"no QWorker (PodAutoscaler)", "", 2 + 3 + 5},
	}
	for _, tc := range cases {
		sample, err := sourceFor(tc.qworker).Measure(ctx)
		if err != nil {
			t.Fatalf("%s: measure: %v", tc.name, err)
		}
		if sample.Backlog != tc.want {
			t.Errorf("%s: backlog %d, want %d", tc.name, sample.Backlog, tc.want)
		}
	}
	if sourceFor("a") != sourceFor("a") || sourceFor("a") == sourceFor("b") || sourceFor("a") == sourceFor("") {
		t.Error("sources are not shared per queue and owner")
	}
	if _, err := s.QWorkerSource(ctx, "jobs", "redis", key, ""); err == nil {
		t.Error("QWorkerSource without a QWorker name: no error")
	}
}

// realRedis starts a Redis for the test and returns a context bounded to a
// minute, its host and port as a ScalerConfig names them, and a client of
// its own (closed at cleanup).
func realRedis(t *testing.T) (context.Context, string, string, *goredis.Client) {
	t.Helper()
	env := testenv.New(t, testenv.Options{Redis: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	host, port, err := net.SplitHostPort(env.RedisAddr)
	if err != nil {
		t.Fatal(err)
	}
	rdb := goredis.NewClient(&goredis.Options{Addr: env.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	return ctx, host, port, rdb
}
