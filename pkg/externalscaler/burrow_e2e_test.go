package externalscaler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc/codes"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/externalscaler"
	pb "github.com/swell-autoscaler/swell/pkg/externalscaler/proto"
	"github.com/swell-autoscaler/swell/pkg/externalscaler/scalertest"
)

// burrowTopicOffsets asks Burrow for the high-water marks it knows of a topic.
func burrowTopicOffsets(ctx context.Context, env *testenv.Env, topic string) ([]int64, error) {
	u := fmt.Sprintf("%s/v3/kafka/%s/topic/%s", env.BurrowURL, env.BurrowCluster, topic)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Offsets []int64 `json:"offsets"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("burrow topic %s: HTTP %d: %w", topic, resp.StatusCode, err)
	}
	return body.Offsets, nil
}

// produceTo writes n records to each partition listed.
func produceTo(ctx context.Context, cl *kgo.Client, topic string, perPartition map[int32]int) error {
	for p, n := range perPartition {
		for i := range n {
			cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "job-%d-%d", p, i)}, nil)
		}
	}
	return cl.Flush(ctx)
}

// TestBurrowSourceOnARealBurrow runs Debian's Burrow against the Kafka
// broker and ZooKeeper, commits offsets for a group (in ZooKeeper, which
// Burrow's kafka_zk module reads), and follows the lag Burrow computes
// through the gRPC server as records arrive and commits catch up; then
// Burrow stops (gRPC Unavailable, never 0) and comes back.
func TestBurrowSourceOnARealBurrow(t *testing.T) {
	env := testenv.New(t, testenv.Options{Burrow: true})
	t.Logf("start times: zookeeper %s, burrow %s", env.Timings["zookeeper"].Round(time.Millisecond), env.Timings["burrow"].Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.KafkaAddrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, "jobs"); err != nil {
		t.Fatal(err)
	}
	if err := produceTo(ctx, cl, "jobs", map[int32]int{0: 100, 1: 50}); err != nil {
		t.Fatal(err)
	}
	// Burrow drops commits for partitions it has not seen on the broker yet.
	eventually(t, 30*time.Second, func() error {
		offs, err := burrowTopicOffsets(ctx, env, "jobs")
		if err != nil || !slices.Equal(offs, []int64{100, 50}) {
			return fmt.Errorf("burrow topic offsets %v, %w; want [100 50]", offs, err)
		}
		return nil
	})
	commit := func(offsets ...int64) {
		t.Helper()
		if err := env.CommitZooKeeperOffsets(ctx, "workers", "jobs", offsets); err != nil {
			t.Fatal(err)
		}
	}

	h := scalertest.Start(t, scalertest.Options{Tracker: externalscaler.TrackerOptions{Interval: 200 * time.Millisecond, MaxFailures: 2}})
	ref := &pb.ScaledObjectRef{Name: "workers", Namespace: "apps", ScalerMetadata: map[string]string{
		"source": "burrow", "burrowURL": env.BurrowURL, "cluster": env.BurrowCluster,
		"consumerGroup": "workers", "targetSize": "20",
	}}
	const metric = "burrow-lag-workers"
	spec, err := h.Client.GetMetricSpec(ctx, ref)
	if err != nil || spec.MetricSpecs[0].MetricName != metric || spec.MetricSpecs[0].TargetSizeFloat != 20 {
		t.Fatalf("GetMetricSpec = %v, %v", spec, err)
	}

	// Burrow answers a group it does not know with HTTP 404 and status
	// NOTFOUND: an error, not a lag of 0.
	unknown := &pb.ScaledObjectRef{Name: "nobody", Namespace: "apps", ScalerMetadata: map[string]string{
		"source": "burrow", "burrowURL": env.BurrowURL, "cluster": env.BurrowCluster, "consumerGroup": "nobody",
	}}
	_, err = h.Client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: unknown, MetricName: "burrow-lag-nobody"})
	wantCode(t, err, codes.Unavailable, `group "nobody"`)
	t.Logf("unknown group: %v", err)

	// The group has caught up: lag 0, inactive.
	commit(100, 50)
	expectValue(ctx, t, h, ref, metric, 0, false)
	// 70 new records and no commit: Burrow's lag (from the broker's
	// high-water marks) rises to 70, and the group turns active.
	if err := produceTo(ctx, cl, "jobs", map[int32]int{0: 40, 1: 30}); err != nil {
		t.Fatal(err)
	}
	expectValue(ctx, t, h, ref, metric, 70, true)
	// The consumer commits part of it: 25 + 10 left.
	commit(115, 70)
	expectValue(ctx, t, h, ref, metric, 35, true)
	// And the rest: back to 0, inactive.
	commit(140, 80)
	expectValue(ctx, t, h, ref, metric, 0, false)
	if err := produceTo(ctx, cl, "jobs", map[int32]int{0: 12}); err != nil {
		t.Fatal(err)
	}
	expectValue(ctx, t, h, ref, metric, 12, true)

	// Burrow stops: Unavailable, never a zero.
	if err := env.StopComponent("burrow"); err != nil {
		t.Fatal(err)
	}
	expectUnavailable(ctx, t, h, ref, metric)
	// Burrow comes back, reads the committed offsets from ZooKeeper again
	// and the high-water marks from the broker: the same lag.
	if err := env.RestartComponent(ctx, "burrow", env.BurrowReady()); err != nil {
		t.Fatal(err)
	}
	expectValue(ctx, t, h, ref, metric, 12, true)
}
