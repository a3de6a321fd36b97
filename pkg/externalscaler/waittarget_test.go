package externalscaler

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/swell-autoscaler/swell/pkg/source"
)

func TestParseWaitTarget(t *testing.T) {
	kafka := func(extra map[string]string) map[string]string {
		md := map[string]string{"source": "kafka", "bootstrapServers": "k:9092", "consumerGroup": "orders"}
		for k, v := range extra {
			md[k] = v
		}
		return md
	}
	for _, tc := range []struct {
		name        string
		md          map[string]string
		wantMetrics []string
		wantErr     string
	}{
		{name: "wait metric alone", md: kafka(map[string]string{"targetWaitSeconds": "5", "serviceTimeSeconds": "0.5"}), wantMetrics: []string{"kafka-wait-orders"}},
		{name: "wait and lag", md: kafka(map[string]string{"targetWaitSeconds": "5", "serviceTimeSeconds": "0.5", "metric": "lag"}), wantMetrics: []string{"kafka-wait-orders", "kafka-lag-orders"}},
		{name: "service time required", md: kafka(map[string]string{"targetWaitSeconds": "5"}), wantErr: `"serviceTimeSeconds" is required`},
		{name: "percentile range", md: kafka(map[string]string{"targetWaitSeconds": "5", "serviceTimeSeconds": "1", "targetPercentile": "0.9999"}), wantErr: `"targetPercentile": 0.9999 must be from 0.5 to 0.999`},
		{name: "zero wait", md: kafka(map[string]string{"targetWaitSeconds": "0", "serviceTimeSeconds": "1"}), wantErr: `targetWaitSeconds`},
		{name: "percentile without target", md: kafka(map[string]string{"targetPercentile": "0.9"}), wantErr: `"targetPercentile" applies only with "targetWaitSeconds"`},
		{name: "no arrival rate", md: map[string]string{"source": "burrow", "burrowURL": "http://b:8000", "cluster": "c", "consumerGroup": "g", "targetWaitSeconds": "5"}, wantErr: `source "burrow" has none`},
		{name: "redis stream", md: map[string]string{"source": "redis", "address": "r:6379", "stream": "q", "consumerGroup": "w", "targetWaitSeconds": "5", "serviceTimeSeconds": "1"}, wantMetrics: []string{"redis-wait-q-w"}},
		{name: "redis needs a service time", md: map[string]string{"source": "redis", "address": "r:6379", "listName": "q", "targetWaitSeconds": "5"}, wantErr: `"serviceTimeSeconds" is required`},
		{name: "rabbitmq", md: map[string]string{"source": "rabbitmq", "host": "mq", "queueName": "jobs", "targetWaitSeconds": "5", "serviceTimeSeconds": "2"}, wantMetrics: []string{"rabbitmq-wait-jobs"}},
		{name: "nats", md: map[string]string{"source": "nats", "natsURL": "nats://n:4222", "stream": "S", "consumer": "c", "targetWaitSeconds": "5", "serviceTimeSeconds": "2"}, wantMetrics: []string{"nats-wait-s-c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := (&Parser{}).Parse(tc.md)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range s.Metrics {
				names = append(names, m.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.wantMetrics, ",") || s.Metrics[0].Target != 1 {
				t.Fatalf("metrics %+v, want %v with the wait metric's target 1", s.Metrics, tc.wantMetrics)
			}
		})
	}
}

func TestWaitReplicasFromReading(t *testing.T) {
	s, err := (&Parser{}).Parse(map[string]string{"source": "kafka", "bootstrapServers": "k:9092", "consumerGroup": "g",
		"targetWaitSeconds": "5", "serviceTimeSeconds": "1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		values     map[string]float64
		want       float64
		wantActive bool
		wantErr    error
	}{
		// λ = 10/s, S = 1 s: Erlang C gives 11 for p95 ≤ 5 s.
		{name: "steady", values: map[string]float64{fieldArrivalRate: 10, fieldLag: 0}, want: 11},
		// 100 records to start within 5 s at 1 s each: 20 more slots.
		{name: "backlog", values: map[string]float64{fieldArrivalRate: 10, fieldLag: 100}, want: 31, wantActive: true},
		{name: "first poll: rate unknown, hold", values: map[string]float64{fieldLag: 50}, wantErr: ErrUnavailable, wantActive: true},
		{name: "idle", values: map[string]float64{fieldArrivalRate: 0, fieldLag: 0}, want: 0},
	} {
		r, err := s.withWait(Reading{Values: tc.values})
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
			}
		} else if err != nil || r.Values[fieldWaitReplicas] != tc.want {
			t.Fatalf("%s: replicas %v (%v), want %v", tc.name, r.Values[fieldWaitReplicas], err, tc.want)
		}
		if got := s.Active(Reading{Values: tc.values}); got != tc.wantActive {
			t.Fatalf("%s: active %v, want %v (the lag decides)", tc.name, got, tc.wantActive)
		}
	}
}

// TestQueueWaitReplicas: on a queue source the arrival rate is the growth
// of the tasks present plus in-flight ÷ service time; activity is the
// backlog's; an old head shortens the backlog's horizon.
func TestQueueWaitReplicas(t *testing.T) {
	s, err := (&Parser{}).Parse(map[string]string{"source": "redis", "address": "r:6379", "stream": "q", "consumerGroup": "w",
		"targetWaitSeconds": "5", "serviceTimeSeconds": "1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		values     map[string]float64
		want       float64
		wantActive bool
		wantErr    error
	}{
		{name: "first poll: no growth yet, hold", values: map[string]float64{"backlog": 3, "ready": 3}, wantErr: ErrUnavailable, wantActive: true},
		// 10 busy slots at 1 s each finish 10/s, nothing grows: λ = 10/s,
		// Erlang C gives 11 for p95 ≤ 5 s (as the Kafka case).
		{name: "steady from in-flight", values: map[string]float64{"backlog": 10, "inFlight": 10, fieldGrowth: 0, fieldBusy: 10}, want: 11, wantActive: true},
		{name: "growing queue adds its growth", values: map[string]float64{"backlog": 10, "inFlight": 10, fieldGrowth: 5, fieldBusy: 5}, want: 11, wantActive: true},
		// 100 waiting at λ 10/s: 20 more slots to start them within 5 s…
		{name: "backlog", values: map[string]float64{"backlog": 100, "ready": 100, fieldGrowth: 0, fieldBusy: 10}, want: 31, wantActive: true},
		// …and the 10 s old head halves the horizon: 40 more.
		{name: "backlog, head 10 s old", values: map[string]float64{"backlog": 100, "ready": 100, fieldGrowth: 0, fieldBusy: 10, fieldOldestAge: 10}, want: 51, wantActive: true},
		{name: "draining faster than arrivals: never negative", values: map[string]float64{fieldGrowth: -50, fieldBusy: 1}, want: 0},
	} {
		r, err := s.withWait(Reading{Values: tc.values})
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
			}
		} else if err != nil || r.Values[fieldWaitReplicas] != tc.want {
			t.Fatalf("%s: replicas %v (%v), want %v", tc.name, r.Values[fieldWaitReplicas], err, tc.want)
		}
		if got := s.Active(Reading{Values: tc.values}); got != tc.wantActive {
			t.Fatalf("%s: active %v, want %v (the backlog decides)", tc.name, got, tc.wantActive)
		}
	}
}

// TestGrowthFields follows the fields a queue probe adds over polls.
func TestGrowthFields(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var g growth
	poll := func(at time.Duration, backlog, inFlight int64, age time.Duration) map[string]float64 {
		vals := map[string]float64{}
		g.add(t0.Add(at), source.Sample{Backlog: backlog, Ready: backlog - inFlight, InFlight: inFlight, OldestAge: age}, vals)
		return vals
	}
	if v := poll(0, 4, 2, 0); len(v) != 0 {
		t.Fatalf("first poll: %v, want no growth or age fields", v)
	}
	v := poll(2*time.Second, 10, 2, 3*time.Second)
	if v[fieldGrowth] != 3 || v[fieldOldestAge] != 3 {
		t.Fatalf("second poll: %v, want growth 3/s (6 more in 2 s) and age 3 s", v)
	}
	if v := poll(2*time.Second, 50, 2, 0); v[fieldGrowth] != 3 {
		t.Fatalf("a poll at the same time: %v, want the last growth kept", v)
	}
	v = poll(32*time.Second, 10, 2, 0)
	// One half-life later the estimate is halfway to this interval's rate
	// (0): 1.5/s, and the busy count stays 2.
	if math.Abs(v[fieldGrowth]-1.5) > 1e-9 || math.Abs(v[fieldBusy]-2) > 1e-9 {
		t.Fatalf("after a half-life: %v, want growth 1.5/s and busy 2", v)
	}
	if _, ok := v[fieldOldestAge]; ok {
		t.Fatalf("unknown age reported: %v", v)
	}
}
