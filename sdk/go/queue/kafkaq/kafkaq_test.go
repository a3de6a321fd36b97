package kafkaq

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/sdk/go/worker"
	"github.com/swell-autoscaler/swell/sdk/go/worker/queuetest"
)

// shared is the Kafka broker (kfake) every test of the package uses.
var shared *testenv.Env

func TestMain(m *testing.M) {
	if topic := os.Getenv(helperTopic); topic != "" {
		os.Exit(holdSecondRecord(topic))
	}
	os.Exit(testenv.RunPackage(m, testenv.Options{Kafka: true}, time.Minute, func(e *testenv.Env) { shared = e }))
}

// newTopic creates a topic named for the test with partitions, and puts
// bodies on it round-robin over the partitions.
func newTopic(t *testing.T, partitions int32, bodies ...string) string {
	t.Helper()
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(shared.KafkaAddrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topic := strings.ReplaceAll(t.Name(), "/", ".") // subtests: no '/' in a topic name
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic: %v", err)
	}
	for i, b := range bodies {
		r := &kgo.Record{Topic: topic, Partition: int32(i) % partitions, Value: []byte(b)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	return topic
}

// protocols are the group protocols every behaviour test runs under.
var protocols = []GroupProtocol{ClassicProtocol, ConsumerProtocol}

// eachProtocol runs test as a subtest per group protocol.
func eachProtocol(t *testing.T, test func(t *testing.T, p GroupProtocol)) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) { test(t, p) })
	}
}

func member(t *testing.T, topic string, p GroupProtocol) *Queue {
	t.Helper()
	q, err := New(Options{Brokers: shared.KafkaAddrs, Topic: topic, Group: topic + "-workers", SessionTimeout: 6 * time.Second, Protocol: p})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// helperTopic, set in the environment, makes the test binary a member
// that acks the first record, takes the second and hangs until killed.
const helperTopic = "KAFKAQ_TEST_HOLD_TOPIC"

// holdSecondRecord is the member run by TestKilledMembersRecordGoesToTheNextMember.
func holdSecondRecord(topic string) int {
	ctx := context.Background()
	q, err := New(Options{Brokers: strings.Split(os.Getenv("KAFKAQ_TEST_BROKERS"), ","), Topic: topic, Group: topic + "-workers",
		SessionTimeout: 6 * time.Second, Protocol: GroupProtocol(os.Getenv("KAFKAQ_TEST_PROTOCOL"))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := range 2 {
		d, err := q.Take(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if i == 0 {
			if err := d.Ack(ctx); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			continue
		}
		fmt.Printf("holding %s\n", d.Body())
	}
	select {} // until SIGKILL
}

// TestKilledMembersRecordGoesToTheNextMember: a member process acks t0 and
// is SIGKILLed holding t1; once its session times out the next member gets
// t1 and t2, never t0.
func TestKilledMembersRecordGoesToTheNextMember(t *testing.T) {
	eachProtocol(t, func(t *testing.T, p GroupProtocol) {
		topic := newTopic(t, 1, "t0", "t1", "t2")
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperTopic+"="+topic, "KAFKAQ_TEST_BROKERS="+strings.Join(shared.KafkaAddrs, ","), "KAFKAQ_TEST_PROTOCOL="+string(p))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "holding t1\n" {
			t.Fatalf("member process said %q, %v; want it holding t1", line, err)
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()

		b := member(t, topic, p)
		defer func() { _ = b.Close(context.Background()) }()
		if got := queuetest.AckFor(t, b, 20*time.Second); fmt.Sprint(got) != "[t1 t2]" {
			t.Fatalf("next member took %v, want [t1 t2]: t1 again, t0 never", got)
		}
	})
}

// TestReturnRewindsToTheRecord: a returned record is fetched again, before
// the records after it.
func TestReturnRewindsToTheRecord(t *testing.T) {
	eachProtocol(t, func(t *testing.T, p GroupProtocol) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		q := member(t, newTopic(t, 1, "t0", "t1"), p)
		defer func() { _ = q.Close(ctx) }()
		if err := queuetest.Take(ctx, t, q).Return(ctx); err != nil {
			t.Fatal(err)
		}
		if got := string(queuetest.Take(ctx, t, q).Body()); got != "t0" {
			t.Fatalf("after returning t0 took %q, want t0 again", got)
		}
	})
}

// TestReturnThenLeaveHandsTheRecordOver: a member that returns a record and
// leaves the group hands it to the partition's next owner.
func TestReturnThenLeaveHandsTheRecordOver(t *testing.T) {
	eachProtocol(t, func(t *testing.T, p GroupProtocol) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		topic := newTopic(t, 1, "t0", "t1")
		a := member(t, topic, p)
		if err := queuetest.Take(ctx, t, a).Return(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(ctx); err != nil {
			t.Fatal(err)
		}
		b := member(t, topic, p)
		defer func() { _ = b.Close(ctx) }()
		if got := queuetest.AckFor(t, b, 10*time.Second); fmt.Sprint(got) != "[t0 t1]" {
			t.Fatalf("next member took %v, want [t0 t1]", got)
		}
	})
}

// TestRebalanceNeitherLosesNorRepeats: a second member joins while the
// first works; between them every record is taken exactly once.
func TestRebalanceNeitherLosesNorRepeats(t *testing.T) {
	eachProtocol(t, func(t *testing.T, p GroupProtocol) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var bodies []string
		for i := range 40 {
			bodies = append(bodies, fmt.Sprintf("t%02d", i))
		}
		topic := newTopic(t, 4, bodies...)
		a := member(t, topic, p)
		defer func() { _ = a.Close(ctx) }()
		first := queuetest.Take(ctx, t, a)
		if err := first.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		b := member(t, topic, p)
		defer func() { _ = b.Close(ctx) }()

		got := make(chan []string, 2)
		for _, q := range []*Queue{a, b} {
			go func() { got <- queuetest.AckFor(t, q, 10*time.Second) }()
		}
		all := append(<-got, <-got...)
		all = append(all, string(first.Body()))
		slices.Sort(all)
		if !slices.Equal(all, bodies) {
			t.Fatalf("the two members took %d records %v, want each of the %d exactly once", len(all), all, len(bodies))
		}
	})
}

// TestTakeAfterClose: Take reports the closed client instead of returning
// nothing forever.
func TestTakeAfterClose(t *testing.T) {
	eachProtocol(t, func(t *testing.T, p GroupProtocol) {
		q := member(t, newTopic(t, 1), p)
		queuetest.ClosedTakeFails(t, q, q.cl.Close, kgo.ErrClientClosed)
	})
}

// TestTakeReturnsNilWhenCancelled: an empty topic and a cancelled context
// give (nil, nil), as worker.Queue asks.
func TestTakeReturnsNilWhenCancelled(t *testing.T) {
	eachProtocol(t, func(t *testing.T, p GroupProtocol) {
		q := member(t, newTopic(t, 1), p)
		defer func() { _ = q.Close(context.Background()) }()
		queuetest.EmptyTakeGivesNil(t, q, 300*time.Millisecond)
	})
}

func TestSettleTimeoutCoversTheRebalance(t *testing.T) {
	for name, tc := range map[string]struct {
		opts Options
		want time.Duration
	}{
		"classic, kgo's rebalance timeout": {opts: Options{}, want: 70 * time.Second},
		"classic, a shorter rebalance":     {opts: Options{Protocol: ClassicProtocol, RebalanceTimeout: 20 * time.Second}, want: 30 * time.Second},
		"KIP-848: the worker's default":    {opts: Options{Protocol: ConsumerProtocol, RebalanceTimeout: 20 * time.Second}, want: 0},
	} {
		t.Run(name, func(t *testing.T) {
			if got := settleTimeout(tc.opts); got != tc.want {
				t.Fatalf("settleTimeout = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestFailingRecordIsDeadLettered: a record that always fails pauses its
// partition after each failure while the other partition's records are
// taken, and after MaxAttempts failures goes to <topic>.dead with where it
// came from, its count and last error; its offset and the rest are
// committed, so a new member of the group gets nothing.
func TestFailingRecordIsDeadLettered(t *testing.T) {
	eachProtocol(t, func(t *testing.T, p GroupProtocol) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Partition 0: poison, t2; partition 1: t1, t3.
		topic := newTopic(t, 2, "poison", "t1", "t2", "t3")
		q, err := New(Options{Brokers: shared.KafkaAddrs, Topic: topic, Group: topic + "-workers", SessionTimeout: 6 * time.Second,
			Protocol: p, MaxAttempts: 3, Backoff: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		var took []string
		for q.Counters().DeadLettered == 0 || len(took) < 6 {
			d := queuetest.Take(ctx, t, q)
			took = append(took, string(d.Body()))
			if string(d.Body()) == "poison" {
				if err := d.(worker.Failer).Fail(ctx, fmt.Errorf("boom %d", q.Counters().Retried+1)); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := d.Ack(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if n := slices.Index(took, "poison"); n < 0 || n+1 >= len(took) || took[n+1] == "poison" {
			t.Fatalf("took %v; want another partition's record right after poison failed (its partition paused)", took)
		}
		if got := slices.Sorted(slices.Values(took)); fmt.Sprint(got) != "[poison poison poison t1 t2 t3]" {
			t.Fatalf("took %v, want poison 3 times and t1, t2, t3 once", took)
		}
		if got, want := q.Counters(), (Counters{Acked: 3, Retried: 2, DeadLettered: 1}); got != want {
			t.Fatalf("counters %+v, want %+v", got, want)
		}
		if err := q.Close(ctx); err != nil {
			t.Fatal(err)
		}

		dead := readAll(ctx, t, DeadLetterTopic(topic), 1)
		want := map[string]string{HeaderTopic: topic, HeaderPartition: "0", HeaderOffset: "0", HeaderAttempts: "3", HeaderError: "boom 3"}
		if string(dead[0].Value) != "poison" || fmt.Sprint(headers(dead[0])) != fmt.Sprint(want) {
			t.Fatalf("dead letter %q with headers %v, want poison with %v", dead[0].Value, headers(dead[0]), want)
		}
		b := member(t, topic, p)
		defer func() { _ = b.Close(ctx) }()
		if got := queuetest.AckFor(t, b, 3*time.Second); len(got) != 0 {
			t.Fatalf("a new member took %v, want nothing: everything was committed", got)
		}
	})
}

// readAll reads n records of topic from its start.
func readAll(ctx context.Context, t *testing.T, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(shared.KafkaAddrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for len(recs) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d records of %s, want %d", len(recs), topic, n)
		}
		recs = append(recs, f.Records()...)
	}
	return recs
}

func headers(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, kv := range r.Headers {
		h[kv.Key] = string(kv.Value)
	}
	return h
}

func TestFailuresCountedPerRecord(t *testing.T) {
	q := &Queue{failing: map[partition]failure{}}
	r := func(p int32, off int64) *kgo.Record { return &kgo.Record{Topic: "t", Partition: p, Offset: off} }
	steps := []struct {
		fail, ack *kgo.Record
		want      int
	}{
		{fail: r(0, 5), want: 1},
		{fail: r(0, 5), want: 2},
		{fail: r(1, 9), want: 1}, // another partition counts apart
		{fail: r(0, 5), want: 3},
		{ack: r(0, 5)},
		{fail: r(0, 5), want: 1}, // acked: forgotten
		{fail: r(0, 6), want: 1}, // another record of the partition starts again
		{fail: r(1, 9), want: 2},
	}
	for i, s := range steps {
		if s.ack != nil {
			q.forget(s.ack)
			continue
		}
		if got := q.count(s.fail); got != s.want {
			t.Fatalf("step %d: failure %d of %s[%d]@%d, want %d", i, got, s.fail.Topic, s.fail.Partition, s.fail.Offset, s.want)
		}
	}
}

var _ worker.Failer = (*delivery)(nil)
