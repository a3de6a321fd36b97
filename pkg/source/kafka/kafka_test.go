package kafka_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
	"github.com/swell-autoscaler/swell/pkg/source/kafka"
)

// driver produces, commits and deletes records from the test side.
type driver struct {
	t   testing.TB
	cl  *kgo.Client
	adm *kadm.Client
}

func newDriver(t testing.TB, brokers []string) *driver {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &driver{t: t, cl: cl, adm: kadm.NewClient(cl)}
}

func (d *driver) createTopic(topic string, partitions int32) {
	d.t.Helper()
	resp, err := d.adm.CreateTopic(context.Background(), partitions, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		d.t.Fatalf("create topic %s: %v", topic, err)
	}
}

func (d *driver) produce(topic string, partition int32, n int) {
	d.t.Helper()
	for range n {
		r := &kgo.Record{Topic: topic, Partition: partition, Value: []byte("task")}
		if err := d.cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			d.t.Fatalf("produce: %v", err)
		}
	}
}

func (d *driver) commit(group, topic string, at map[int32]int64) {
	d.t.Helper()
	var os kadm.Offsets
	for p, o := range at {
		os.Add(kadm.Offset{Topic: topic, Partition: p, At: o, LeaderEpoch: -1})
	}
	resp, err := d.adm.CommitOffsets(context.Background(), group, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		d.t.Fatalf("commit: %v", err)
	}
}

func newSource(t testing.TB, brokers []string, ref kafka.QueueRef) (*kafka.Client, func() (int64, error)) {
	t.Helper()
	c, err := kafka.New(context.Background(), kafka.Config{Brokers: brokers, ConsumerGroup: "workers"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	s, err := c.Queue(ref)
	if err != nil {
		t.Fatalf("Queue: %v", err)
	}
	return c, func() (int64, error) {
		got, err := s.Measure(context.Background())
		if err == nil && (got.Ready != got.Backlog || got.InFlight != 0 || got.Time.IsZero()) {
			t.Fatalf("sample %+v: want Ready = Backlog, InFlight 0 and a time", got)
		}
		return got.Backlog, err
	}
}

func TestLag(t *testing.T) {
	env := testenv.New(t, testenv.Options{Kafka: true})
	d := newDriver(t, env.KafkaAddrs)
	const topic = "tasks"
	d.createTopic(topic, 3)
	_, measure := newSource(t, env.KafkaAddrs, kafka.QueueRef{Topic: topic})
	steps := []struct {
		name string
		do   func()
		want int64
	}{
		{"empty topic, no commits", func() {}, 0},
		{"4 records on p0, 2 on p1, no commits: all count", func() { d.produce(topic, 0, 4); d.produce(topic, 1, 2) }, 6},
		{"p0 committed at 3", func() { d.commit("workers", topic, map[int32]int64{0: 3}) }, 3},
		{"p1 committed at 2, p2 at 0", func() { d.commit("workers", topic, map[int32]int64{1: 2, 2: 0}) }, 1},
		{"another group's commit changes nothing", func() { d.commit("others", topic, map[int32]int64{0: 4}) }, 1},
		{"5 more on p2", func() { d.produce(topic, 2, 5) }, 6},
		{"p0 committed at the end", func() { d.commit("workers", topic, map[int32]int64{0: 4}) }, 5},
	}
	for _, st := range steps {
		st.do()
		got, err := measure()
		if err != nil {
			t.Fatalf("after %s: Measure: %v", st.name, err)
		}
		if got != st.want {
			t.Fatalf("after %s: lag %d, want %d", st.name, got, st.want)
		}
	}
}

func TestPartitionLagRule(t *testing.T) {
	// The rule through the public surface: a commit older than the log
	// start counts from the start, after DeleteRecords moved it.
	env := testenv.New(t, testenv.Options{Kafka: true})
	d := newDriver(t, env.KafkaAddrs)
	d.createTopic("trimmed", 1)
	d.produce("trimmed", 0, 10)
	d.commit("workers", "trimmed", map[int32]int64{0: 2})
	_, measure := newSource(t, env.KafkaAddrs, kafka.QueueRef{Topic: "trimmed"})
	if got, err := measure(); err != nil || got != 8 {
		t.Fatalf("before trimming: lag %d, %v; want 8", got, err)
	}
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: "trimmed", Partition: 0, At: 6, LeaderEpoch: -1})
	resp, err := d.adm.DeleteRecords(context.Background(), os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Skipf("broker cannot delete records: %v", err)
	}
	if got, err := measure(); err != nil || got != 4 {
		t.Fatalf("after deleting records before 6 (commit at 2): lag %d, %v; want 4", got, err)
	}
}

func TestMissingTopicIsAnError(t *testing.T) {
	env := testenv.New(t, testenv.Options{Kafka: true})
	_, measure := newSource(t, env.KafkaAddrs, kafka.QueueRef{Topic: "no-such-topic"})
	if got, err := measure(); err == nil || !strings.Contains(err.Error(), `"no-such-topic"`) {
		t.Fatalf("Measure = %d, %v; want an error naming the topic", got, err)
	}
}

func TestBrokerStopped(t *testing.T) {
	env := testenv.New(t, testenv.Options{Kafka: true})
	d := newDriver(t, env.KafkaAddrs)
	d.createTopic("tasks", 2)
	d.produce("tasks", 0, 3)
	_, measure := newSource(t, env.KafkaAddrs, kafka.QueueRef{Topic: "tasks"})
	if got, err := measure(); err != nil || got != 3 {
		t.Fatalf("before stop: %d, %v", got, err)
	}
	env.Stop()
	if got, err := measure(); err == nil {
		t.Fatalf("Measure after the broker stopped = %d, want an error", got)
	}
}

func TestQueueNeedsTopicAndGroup(t *testing.T) {
	env := testenv.New(t, testenv.Options{Kafka: true})
	c, err := kafka.New(context.Background(), kafka.Config{Brokers: env.KafkaAddrs})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := c.Queue(kafka.QueueRef{Group: "g"}); err == nil || !strings.Contains(err.Error(), "topic is required") {
		t.Errorf("Queue without topic = %v", err)
	}
	if _, err := c.Queue(kafka.QueueRef{Topic: "t"}); err == nil || !strings.Contains(err.Error(), "no consumer group") {
		t.Errorf("Queue without any group = %v", err)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  kafka.Config
		want string
	}{
		{"minimal", kafka.Config{Brokers: []string{"k:9092"}}, ""},
		{"sasl and tls", kafka.Config{Brokers: []string{"k:9093"}, SASLMechanism: kafka.SASLSCRAMSHA512, Username: "u", Password: "p", TLS: brokerconn.TLS{Enabled: true}}, ""},
		{"no brokers", kafka.Config{}, "brokers must list"},
		{"broker without port", kafka.Config{Brokers: []string{"k:9092", "k2"}}, `brokers[1] "k2"`},
		{"unknown mechanism", kafka.Config{Brokers: []string{"k:1"}, SASLMechanism: "GSSAPI", Username: "u", Password: "p"}, `saslMechanism "GSSAPI"`},
		{"mechanism without password", kafka.Config{Brokers: []string{"k:1"}, SASLMechanism: kafka.SASLPlain, Username: "u"}, "needs username and password"},
		{"password without mechanism", kafka.Config{Brokers: []string{"k:1"}, Username: "u", Password: "p"}, "saslMechanism is empty"},
		{"negative timeout", kafka.Config{Brokers: []string{"k:1"}, DialTimeout: -1}, "dialTimeout"},
		{"tls off with server name", kafka.Config{Brokers: []string{"k:1"}, TLS: brokerconn.TLS{ServerName: "k"}}, "tls.enabled is false"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func BenchmarkMeasure(b *testing.B) {
	env := testenv.New(b, testenv.Options{Kafka: true})
	d := newDriver(b, env.KafkaAddrs)
	d.createTopic("bench", 12)
	d.produce("bench", 3, 10)
	c, err := kafka.New(context.Background(), kafka.Config{Brokers: env.KafkaAddrs, ConsumerGroup: "workers"})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	s, _ := c.Queue(kafka.QueueRef{Topic: "bench"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Measure(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOldestAge: the age is the oldest timestamp among the first
// unconsumed record of each partition with lag (records stamped by the
// producer here, so the expected ages are exact up to the test's run).
func TestOldestAge(t *testing.T) {
	env := testenv.New(t, testenv.Options{Kafka: true})
	d := newDriver(t, env.KafkaAddrs)
	const topic = "aged"
	d.createTopic(topic, 2)
	c, err := kafka.New(context.Background(), kafka.Config{Brokers: env.KafkaAddrs, ConsumerGroup: "workers"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	s, err := c.Queue(kafka.QueueRef{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	produceAt := func(p int32, ago ...time.Duration) {
		t.Helper()
		for _, a := range ago {
			r := &kgo.Record{Topic: topic, Partition: p, Value: []byte("task"), Timestamp: start.Add(-a)}
			if err := d.cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := []struct {
		name string
		do   func()
		want time.Duration // 0: unknown / nothing waiting
	}{
		{"empty", func() {}, 0},
		{"p0 at -40s,-30s; p1 at -50s,-10s; no commits", func() {
			produceAt(0, 40*time.Second, 30*time.Second)
			produceAt(1, 50*time.Second, 10*time.Second)
		}, 50 * time.Second},
		{"p1 committed at 1: its first unconsumed is -10s, p0's -40s", func() { d.commit("workers", topic, map[int32]int64{1: 1}) }, 40 * time.Second},
		{"p0 committed at 2 (no lag): p1's -10s", func() { d.commit("workers", topic, map[int32]int64{0: 2}) }, 10 * time.Second},
		{"all consumed", func() { d.commit("workers", topic, map[int32]int64{1: 2}) }, 0},
	}
	for _, st := range steps {
		st.do()
		got, err := s.Measure(context.Background())
		if err != nil {
			t.Fatalf("%s: Measure: %v", st.name, err)
		}
		// Record timestamps have millisecond resolution.
		elapsed := time.Since(start) + time.Millisecond
		if st.want == 0 {
			if got.OldestAge != 0 {
				t.Fatalf("%s: OldestAge %v, want 0", st.name, got.OldestAge)
			}
			continue
		}
		if got.OldestAge < st.want || got.OldestAge > st.want+elapsed {
			t.Fatalf("%s: OldestAge %v, want %v (plus at most the %v since producing)", st.name, got.OldestAge, st.want, elapsed)
		}
	}
}
