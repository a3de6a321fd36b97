package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/kafka"
	"github.com/swell-autoscaler/swell/pkg/source/sourcetest"
)

// TestQueuesShareOffsetRequests: twenty (topic, group) pairs of one
// cluster measured at the same moment share one round of offset requests
// (a few at most on a busy machine), each lag its own pair's, a group that
// never committed and a missing topic included; measured each alone they
// cost a round per queue.
func TestQueuesShareOffsetRequests(t *testing.T) {
	env := testenv.New(t, testenv.Options{Kafka: true})
	d := newDriver(t, env.KafkaAddrs)
	const n = 20
	refs := make([]kafka.QueueRef, n)
	want := make([]int64, n)
	for i := range refs {
		refs[i] = kafka.QueueRef{Topic: fmt.Sprintf("batch-%d", i%5), Group: fmt.Sprintf("g%d", i)}
	}
	for i := range 5 {
		d.createTopic(fmt.Sprintf("batch-%d", i), 2)
		d.produce(fmt.Sprintf("batch-%d", i), 0, 10)
	}
	for i, ref := range refs {
		// Group i committed i%10 on partition 0; groups 15.. never did.
		want[i] = 10
		if i < 15 {
			d.commit(ref.Group, ref.Topic, map[int32]int64{0: int64(i % 10)})
			want[i] = 10 - int64(i%10)
		}
	}
	missing := kafka.QueueRef{Topic: "no-such-topic", Group: "g0"}
	for _, tc := range []struct {
		name       string
		window     time.Duration
		maxBatches int64
	}{{"batched", 300 * time.Millisecond, 3}, {"alone", -1, n + 1}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := kafka.New(context.Background(), kafka.Config{Brokers: env.KafkaAddrs, BatchWindow: tc.window})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			srcs := make([]source.Source, 0, n+1)
			for _, ref := range append(refs, missing) {
				s, err := c.Queue(ref)
				if err != nil {
					t.Fatal(err)
				}
				srcs = append(srcs, s)
			}
			samples, errs := sourcetest.MeasureAll(context.Background(), srcs)
			for i := range refs {
				if errs[i] != nil || samples[i].Backlog != want[i] {
					t.Fatalf("%+v: lag %d (%v), want %d", refs[i], samples[i].Backlog, errs[i], want[i])
				}
			}
			if errs[n] == nil {
				t.Fatalf("missing topic measured %+v, want an error", samples[n])
			}
			t.Logf("%d queues measured at once: %d offset request rounds; missing topic: %v", n+1, c.Batches(), errs[n])
			if got := c.Batches(); got < 1 || got > tc.maxBatches {
				t.Fatalf("%d rounds, want 1..%d", got, tc.maxBatches)
			}
		})
	}
}
