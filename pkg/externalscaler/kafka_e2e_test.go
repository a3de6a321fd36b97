package externalscaler_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/externalscaler"
	pb "github.com/swell-autoscaler/swell/pkg/externalscaler/proto"
	"github.com/swell-autoscaler/swell/pkg/externalscaler/scalertest"
)

// kafkaValues reads lag and ETA through GetMetrics.
func kafkaValues(ctx context.Context, h *scalertest.Scaler, ref *pb.ScaledObjectRef, group string) (lag, eta float64, err error) {
	for _, name := range []string{"kafka-lag-" + group, "kafka-eta-" + group} {
		r, err := h.Client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: name})
		if err != nil {
			return 0, 0, err
		}
		v := r.MetricValues[0]
		if float64(v.MetricValue) != float64(int64(v.MetricValueFloat+0.5)) {
			return 0, 0, fmt.Errorf("%s: int %d does not round float %v", name, v.MetricValue, v.MetricValueFloat)
		}
		if name[6] == 'l' {
			lag = v.MetricValueFloat
		} else {
			eta = v.MetricValueFloat
		}
	}
	return lag, eta, nil
}

// TestKafkaLagAndETAOnARealBroker produces to a Kafka-protocol broker,
// consumes slowly with a consumer group, and watches lag and ETA rise and
// fall, IsActive flip and StreamIsActive push, through the gRPC client.
func TestKafkaLagAndETAOnARealBroker(t *testing.T) {
	env := testenv.New(t, testenv.Options{Kafka: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.KafkaAddrs...), kgo.DefaultProduceTopic("jobs"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, nil, "jobs"); err != nil {
		t.Fatal(err)
	}
	const etaCap = 999
	plugins, err := externalscaler.ParsePlugins([]byte(fmt.Sprintf("kafka: {brokers: [%q]}\nrateWindow: 3s\nplugins:\n  plugin-jobs: {groups: [workers, workers-historic], topics: [jobs]}\n", env.KafkaAddrs[0])), nil)
	if err != nil {
		t.Fatal(err)
	}
	parser := &externalscaler.Parser{Plugins: plugins, Defaults: externalscaler.Defaults{RateWindow: 2 * time.Second, ETACap: etaCap}}
	h := scalertest.Start(t, scalertest.Options{Parser: parser, Tracker: externalscaler.TrackerOptions{Interval: 200 * time.Millisecond}})
	ref := &pb.ScaledObjectRef{Name: "workers", Namespace: "apps", ScalerMetadata: map[string]string{
		"source": "kafka", "bootstrapServers": env.KafkaAddrs[0], "consumerGroup": "workers", "topic": "jobs",
		"metric": "lag,eta", "targetSize": "50", "targetETASeconds": "10",
	}}
	azul := &pb.ScaledObjectRef{Name: "plugin-jobs", Namespace: "azul", ScalerMetadata: map[string]string{
		"entityType": "plugin", "pluginName": "plugin-jobs", "targetSize": "100", "includeHistoric": "false",
	}}

	// Empty topic: lag 0, ETA 0, inactive, and the stream says so.
	eventually(t, 10*time.Second, func() error {
		lag, eta, err := kafkaValues(ctx, h, ref, "workers")
		if err != nil || lag != 0 || eta != 0 {
			return fmt.Errorf("lag %v eta %v err %w", lag, eta, err)
		}
		return nil
	})
	st, err := h.Client.StreamIsActive(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	expectStream(t, st, false)

	// 600 records, nobody consuming: lag 600, ETA at the cap, active.
	for i := range 600 {
		cl.Produce(ctx, &kgo.Record{Value: fmt.Appendf(nil, "job-%d", i)}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	expectStream(t, st, true)
	eventually(t, 10*time.Second, func() error {
		lag, eta, err := kafkaValues(ctx, h, ref, "workers")
		if err != nil || lag != 600 || eta != etaCap {
			return fmt.Errorf("lag %v eta %v err %w", lag, eta, err)
		}
		return nil
	})
	if a, err := h.Client.IsActive(ctx, ref); err != nil || !a.Result {
		t.Fatalf("IsActive = %v, %v", a, err)
	}
	// The Azul ScaledObject shares the group (workers-historic is left
	// out): no consumption yet, so Azul's rule reports the raw lag.
	ab, err := h.Client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: azul, MetricName: "backlog"})
	if err != nil || ab.MetricValues[0].MetricValueFloat != 600 {
		t.Fatalf("azul backlog = %v, %v; want 600", ab, err)
	}

	// A slow consumer: 10 records every 100 ms, about 100/s.
	consumeSlowly(ctx, t, env.KafkaAddrs, "workers")
	var sawETA, sawLag float64
	eventually(t, 30*time.Second, func() error {
		lag, eta, err := kafkaValues(ctx, h, ref, "workers")
		if err != nil {
			return err
		}
		if lag > 0 && lag < 600 && eta > 0 && eta < etaCap {
			sawLag, sawETA = lag, eta
			return nil
		}
		return fmt.Errorf("lag %v eta %v: waiting for a draining queue with a finite ETA", lag, eta)
	})
	t.Logf("while draining: lag %.0f, ETA %.1fs (≈ lag ÷ ~100 records/s)", sawLag, sawETA)
	if want := sawLag / 100; sawETA < want/4 || sawETA > want*4 {
		t.Errorf("ETA %.1fs is far from lag/rate ≈ %.1fs", sawETA, want)
	}
	ab, err = h.Client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: azul, MetricName: "backlog"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Azul backlog while draining: %.2f", ab.MetricValues[0].MetricValueFloat)

	// Drained: the stream pushes false, lag and ETA fall to 0.
	expectStreamWithin(t, st, false, 30*time.Second)
	lag, eta, err := kafkaValues(ctx, h, ref, "workers")
	if err != nil || lag != 0 || eta != 0 {
		t.Fatalf("drained: lag %v eta %v err %v", lag, eta, err)
	}
	if a, err := h.Client.IsActive(ctx, azul); err != nil || !a.Result {
		t.Fatalf("Azul IsActive = %v, %v; the Azul scaler always answers true", a, err)
	}
}

func expectStreamWithin(t *testing.T, st pb.ExternalScaler_StreamIsActiveClient, want bool, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("StreamIsActive: %v", err)
		}
		if r.Result == want {
			return
		}
	}
	t.Fatalf("StreamIsActive never pushed %v", want)
}

// consumeSlowly consumes and commits 10 records per 100 ms until ctx or
// the test ends.
func consumeSlowly(ctx context.Context, t *testing.T, brokers []string, group string) {
	c, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics("jobs"),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; c.Close() })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := c.PollRecords(ctx, 10)
			if recs := fs.Records(); len(recs) > 0 {
				if err := c.CommitRecords(ctx, recs...); err != nil && !errors.Is(err, context.Canceled) {
					t.Logf("commit: %v", err)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

// TestKafkaOutageIsUnavailable: a cluster that goes away, and one that
// never answered, give gRPC Unavailable, never a zero.
func TestKafkaOutageIsUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, err := testenv.Start(ctx, testenv.Options{Kafka: true})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.KafkaAddrs...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "jobs"); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "jobs", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	h := scalertest.Start(t, scalertest.Options{Tracker: externalscaler.TrackerOptions{Interval: 200 * time.Millisecond, MaxFailures: 2}})
	md := func(addr string) *pb.GetMetricsRequest {
		return &pb.GetMetricsRequest{MetricName: "kafka-lag-g", ScaledObjectRef: &pb.ScaledObjectRef{Name: "w", Namespace: "ns",
			ScalerMetadata: map[string]string{"source": "kafka", "bootstrapServers": addr, "consumerGroup": "g", "topic": "jobs"}}}
	}
	eventually(t, 10*time.Second, func() error {
		r, err := h.Client.GetMetrics(ctx, md(env.KafkaAddrs[0]))
		if err != nil || r.MetricValues[0].MetricValue != 1 {
			return fmt.Errorf("%v %w", r, err)
		}
		return nil
	})
	env.Stop()
	eventually(t, 30*time.Second, func() error {
		r, err := h.Client.GetMetrics(ctx, md(env.KafkaAddrs[0]))
		if status.Code(err) == codes.Unavailable {
			t.Logf("after the outage: %v", err)
			return nil
		}
		if err == nil && r.MetricValues[0].MetricValueFloat == 0 {
			t.Fatalf("outage reported as a zero lag")
		}
		return fmt.Errorf("%v %w", r, err)
	})
	_, err = h.Client.GetMetrics(ctx, md("127.0.0.1:1"))
	wantCode(t, err, codes.Unavailable, "never measured successfully")
}
