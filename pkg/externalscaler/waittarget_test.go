package externalscaler

import (
	"errors"
	"strings"
	"testing"
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
		{name: "not kafka", md: map[string]string{"source": "redis", "address": "r:6379", "listName": "q", "targetWaitSeconds": "5"}, wantErr: `source "redis" has none`},
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
