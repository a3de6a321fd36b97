package externalscaler

import (
	"math"
	"testing"
	"time"
)

func TestSumLagRule(t *testing.T) {
	got := SumLag([]PartitionOffsets{
		{Start: 0, End: 100, Committed: 40},  // 60
		{Start: 50, End: 100, Committed: -1}, // no commit: from start, 50
		{Start: 80, End: 100, Committed: 10}, // commit below start: 20
		{Start: 0, End: 100, Committed: 120}, // commit past end: 0, never negative
	})
	want := LagTotals{Lag: 130, Position: 40 + 50 + 80 + 120, End: 400, Partitions: 4}
	if got != want {
		t.Fatalf("SumLag = %+v, want %+v", got, want)
	}
}

func TestETARule(t *testing.T) {
	for _, tc := range []struct {
		lag        int64
		rate, want float64
	}{
		{0, 0, 0},      // nothing waiting
		{0, 50, 0},     // nothing waiting, consumers idle-fast
		{100, 0, 3600}, // waiting, nobody consuming → cap
		{100, math.NaN(), 3600},
		{100, 10, 10},  // 100 records at 10/s
		{1e9, 1, 3600}, // capped
	} {
		if got := ETASeconds(tc.lag, tc.rate, 3600); got != tc.want {
			t.Errorf("ETASeconds(%d, %v) = %v, want %v", tc.lag, tc.rate, got, tc.want)
		}
	}
}

func TestAzulBacklogMatchesTheAzulScaler(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		lag, added, processed int64
		span                  time.Duration
		want                  float64
	}{
		{"nothing processed: raw lag", 500, 0, 0, time.Minute, 500},
		{"draining 100/min net", 1000, 100, 200, time.Minute, 10},
		{"falling behind, small lag", 2, 200, 100, time.Minute, 2},
		{"falling behind 100/min", 1000, 200, 99, time.Minute, 1000 / (1 - math.Sqrt(102)/100)},
		{"doomed", 2e6, 0, 0, time.Minute, azulDoomed},
	} {
		if got := AzulBacklog(tc.lag, tc.added, tc.processed, tc.span); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: AzulBacklog = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRateWindow(t *testing.T) {
	w := rateWindow{window: 10 * time.Second}
	t0 := time.Unix(0, 0)
	if w.rate() != 0 {
		t.Fatal("rate with no polls")
	}
	for i := range 30 {
		w.add(progressPoint{at: t0.Add(time.Duration(i) * time.Second), position: int64(i * 5), end: int64(i * 7)})
	}
	if r := w.rate(); r != 5 {
		t.Fatalf("rate = %v, want 5/s", r)
	}
	if len(w.points) > 12 {
		t.Fatalf("window keeps %d points, want about 11", len(w.points))
	}
	// A reset (offsets going back) is no progress, not a negative rate.
	w.add(progressPoint{at: t0.Add(31 * time.Second), position: 0})
	if r := w.rate(); r != 0 {
		t.Fatalf("rate after reset = %v, want 0", r)
	}
}

// BenchmarkKafkaLag10000Partitions times the lag computation for a group
// over 10,000 partitions (the pure part of a poll; the broker round trips
// are not included).
func BenchmarkKafkaLag10000Partitions(b *testing.B) {
	parts := make([]PartitionOffsets, 10000)
	for i := range parts {
		parts[i] = PartitionOffsets{Start: int64(i), End: int64(i * 3), Committed: int64(i*2 - 5)}
	}
	b.ReportAllocs()
	var t LagTotals
	for b.Loop() {
		t = SumLag(parts)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "µs/10k-partitions")
	_ = t
}
