package policy

import (
	"testing"
	"time"
)

func BenchmarkQueueSizingDesired(b *testing.B) {
	q := QueueSizing{MaxReplicas: 100, ScalingFactor: 0.25, CountInFlight: true}
	b.ReportAllocs()
	var sink int32
	for i := 0; b.Loop(); i++ {
		sink += q.Desired(QueueSample{Queued: int64(i % 500), InFlight: 7})
	}
	_ = sink
}

// BenchmarkHPADecide measures one full HPA reconcile decision: a cpu
// utilisation metric over 20 pods plus an external backlog metric, then
// stabilisation and rate limits with a warm history.
func BenchmarkHPADecide(b *testing.B) {
	h := NewHPA(HPASpec{MinReplicas: 1, MaxReplicas: 100})
	pods := cpuPods([]int64{300, 500, 700, 650, 800, 100, 900, 400, 420, 380, 300, 500, 700, 650, 800, 100, 900, 400, 420, 380}, allReady(20))
	metrics := []MetricInput{cpuUtil(60, pods), backlogMetric(120)[0]}
	now := t0
	for range 40 { // warm the 300 s history
		h.Decide(now, 20, PodCounts{Total: 20, Ready: 20}, metrics)
		now = now.Add(15 * time.Second)
	}
	b.ReportAllocs()
	for b.Loop() {
		h.Decide(now, 20, PodCounts{Total: 20, Ready: 20}, metrics)
		now = now.Add(15 * time.Second)
	}
}
