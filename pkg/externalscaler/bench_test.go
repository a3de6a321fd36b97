package externalscaler_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swell-autoscaler/swell/pkg/externalscaler"
	pb "github.com/swell-autoscaler/swell/pkg/externalscaler/proto"
	"github.com/swell-autoscaler/swell/pkg/externalscaler/scalertest"
)

// BenchmarkGetMetrics1000ScaledObjects: 1,000 ScaledObjects (over 100
// distinct targets, ten ScaledObjects each, as many deployments share a
// queue) call GetMetrics concurrently over loopback gRPC; answers come
// from the cache. Reports calls/s and p50/p99 latency.
func BenchmarkGetMetrics1000ScaledObjects(b *testing.B) {
	var doc strings.Builder
	doc.WriteString(`{"q": {`)
	for i := range 100 {
		if i > 0 {
			doc.WriteString(",")
		}
		fmt.Fprintf(&doc, `"t%d": %d.5`, i, i)
	}
	doc.WriteString("}}")
	js := newJSONServer(b, doc.String())
	h := scalertest.Start(b, scalertest.Options{Tracker: externalscaler.TrackerOptions{Interval: time.Second}})
	reqs := make([]*pb.GetMetricsRequest, 1000)
	for i := range reqs {
		reqs[i] = &pb.GetMetricsRequest{MetricName: fmt.Sprintf("m%d", i), ScaledObjectRef: &pb.ScaledObjectRef{
			Name: fmt.Sprintf("so-%d", i), Namespace: "bench", ScalerMetadata: map[string]string{
				"source": "http", "url": js.URL, "valueLocation": fmt.Sprintf("q.t%d", i%100),
				"metricName": fmt.Sprintf("m%d", i), "targetValue": "10",
			}}}
	}
	ctx := context.Background()
	for _, r := range reqs { // warm: parse, start watchers, first poll
		if _, err := h.Client.GetMetrics(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	var (
		mu   sync.Mutex
		lats []time.Duration
		next int64
	)
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		var i int
		mu.Lock()
		i = int(next)
		next += 137
		mu.Unlock()
		for pb.Next() {
			t0 := time.Now()
			if _, err := h.Client.GetMetrics(ctx, reqs[i%len(reqs)]); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(t0))
			i++
		}
		mu.Lock()
		lats = append(lats, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lats)
	if len(lats) == 0 {
		return
	}
	b.ReportMetric(float64(len(lats))/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(h.Tracker.Len()), "targets")
}
