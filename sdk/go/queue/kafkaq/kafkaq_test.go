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
