package externalscaler

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/policy/waittime"
)

// TestKafkaWaitOldestAge measures real topics on kfake through a Kafka
// wait target's probe: 100 records waiting for a group that has consumed
// none, stamped by the producer either just now or ten minutes back. The
// probe reports the oldest record's age in both cases; the wait metric is
// the model's answer without the age while the head is younger than the
// target, and a larger answer, the model's with the age, once it is older.
func TestKafkaWaitOldestAge(t *testing.T) {
	env := testenv.New(t, testenv.Options{Kafka: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.KafkaAddrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const target = 30 * time.Second
	for _, tc := range []struct {
		name    string
		stamped time.Duration // how long before producing the records are stamped
		raised  bool
	}{
		{name: "head younger than the target", stamped: 0},
		{name: "head ten minutes old", stamped: 10 * time.Minute, raised: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := fmt.Sprintf("aged-%d", int(tc.stamped.Seconds()))
			if _, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, topic); err != nil {
				t.Fatal(err)
			}
			spec, err := (&Parser{}).Parse(map[string]string{"source": "kafka", "bootstrapServers": env.KafkaAddrs[0],
				"consumerGroup": "workers", "topic": topic, "targetWaitSeconds": fmt.Sprint(target.Seconds()), "serviceTimeSeconds": "1"})
			if err != nil {
				t.Fatal(err)
			}
			p, err := spec.target.open(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Close() })
			t0 := time.Unix(5000, 0)
			if _, err := p.measure(ctx, t0); err != nil {
				t.Fatal(err)
			}
			produced := time.Now()
			for i := range 100 {
				r := &kgo.Record{Topic: topic, Partition: int32(i % 2), Value: []byte("task"), Timestamp: produced.Add(-tc.stamped)}
				if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			r, err := p.measure(ctx, t0.Add(2*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			// Record timestamps have millisecond resolution.
			elapsed := time.Since(produced) + time.Millisecond
			age, ok := r.Values[fieldOldestAge]
			if !ok || age < tc.stamped.Seconds() || age > (tc.stamped+elapsed).Seconds() {
				t.Fatalf("oldest age %v (reported %v), want %v plus at most the %v since producing", age, ok, tc.stamped, elapsed)
			}
			in := waittime.Inputs{ArrivalRate: r.Values[fieldArrivalRate], ServiceTime: time.Second, Concurrency: 1, Backlog: 100}
			without := waittime.Replicas(in, waittime.Target{Wait: target})
			in.OldestAge = time.Duration(age * float64(time.Second))
			with := waittime.Replicas(in, waittime.Target{Wait: target})
			got, err := spec.withWait(r)
			if err != nil {
				t.Fatal(err)
			}
			n := got.Values[fieldWaitReplicas]
			if r.Values[fieldLag] != 100 || r.Values[fieldArrivalRate] != 50 {
				t.Fatalf("reading %v, want lag 100 and 50 records/s (100 in 2 s)", r.Values)
			}
			if tc.raised && (n != float64(with.Replicas) || n <= float64(without.Replicas)) {
				t.Fatalf("wait metric %v, want %d (%s), more than %d without the age", n, with.Replicas, with.Reason, without.Replicas)
			}
			if !tc.raised && n != float64(without.Replicas) {
				t.Fatalf("wait metric %v, want %d (%s): a head younger than the target changes nothing", n, without.Replicas, without.Reason)
			}
			t.Logf("oldest age %.1fs: wait metric %v (%d without the age)", age, n, without.Replicas)
		})
	}
}
