package policy

import (
	"errors"
	"testing"
	"time"
)

// cpuPods builds running pods with a 1-core request and the given usage.
// ready[i] false marks pod i unready (for cpu); levels shorter than ready
// leave the remaining pods without a metric.
func cpuPods(levels []int64, ready []bool) []PodMetric {
	pods := make([]PodMetric, len(ready))
	for i := range pods {
		pods[i] = PodMetric{Phase: PodRunning, RequestMilli: 1000, Unready: !ready[i]}
		if i < len(levels) {
			pods[i].HasMetric = true
			pods[i].Milli = levels[i]
		}
	}
	return pods
}

func allReady(n int) []bool {
	r := make([]bool, n)
	for i := range r {
		r[i] = true
	}
	return r
}

func cpuUtil(pct int32, pods []PodMetric) MetricInput {
	return MetricInput{Source: ResourceMetric, CPU: true, Target: Target{Type: UtilizationTarget, Utilization: pct}, Pods: pods}
}

// The cases below mirror upstream's replica_calculator_test.go scenarios.
func TestReplicasForMetricMirrorsUpstream(t *testing.T) {
	tests := []struct {
		name    string
		current int32
		pods    PodCounts
		metric  MetricInput
		want    int32
	}{
		{"scale up on utilization", 3, PodCounts{}, cpuUtil(30, cpuPods([]int64{300, 500, 700}, allReady(3))), 5},
		{"scale down on utilization", 5, PodCounts{}, cpuUtil(50, cpuPods([]int64{100, 300, 500, 250, 250}, allReady(5))), 3},
		{"within tolerance keeps count", 3, PodCounts{}, cpuUtil(50, cpuPods([]int64{500, 520, 530}, allReady(3))), 3},
		{"unready pods count as zero on scale-up", 3, PodCounts{}, cpuUtil(30, cpuPods([]int64{300, 500, 700}, []bool{false, true, true})), 4},
		{"unready rebalance flips direction: no scale", 3, PodCounts{}, cpuUtil(30, cpuPods([]int64{400, 500, 700}, []bool{true, false, false})), 3},
		{"unready pods ignored on scale-down", 5, PodCounts{}, cpuUtil(50, cpuPods([]int64{100, 300, 500, 250, 250}, []bool{false, false, true, true, true})), 2},
		{"missing metric at exact target: no change", 2, PodCounts{}, cpuUtil(100, cpuPods([]int64{1000}, allReady(2))), 2},
		{"missing metric on scale-down counts as 100%", 4, PodCounts{}, cpuUtil(100, cpuPods([]int64{400, 95}, allReady(4))), 3},
		{"missing metric on scale-up counts as 0%", 4, PodCounts{}, cpuUtil(50, cpuPods([]int64{1000, 1000}, allReady(4))), 4},
		{"missing metrics can flip direction: no scale", 3, PodCounts{}, cpuUtil(100, cpuPods([]int64{1200}, allReady(3))), 3},
		{"utilization truncates like upstream", 3, PodCounts{}, cpuUtil(100, cpuPods([]int64{1110, 1110, 1109}, allReady(3))), 3},
		{"pods metric average value", 3, PodCounts{}, MetricInput{Source: PodsMetric, Target: Target{Type: AverageValueTarget, Milli: 10000},
			Pods: []PodMetric{{Phase: PodRunning, HasMetric: true, Milli: 20000}, {Phase: PodRunning, HasMetric: true, Milli: 10000}, {Phase: PodRunning, HasMetric: true, Milli: 30000}}}, 6},
		{"pods metric ignores failed and deleting pods", 3, PodCounts{}, MetricInput{Source: PodsMetric, Target: Target{Type: AverageValueTarget, Milli: 10000},
			Pods: []PodMetric{{Phase: PodRunning, HasMetric: true, Milli: 20000}, {Phase: PodFailed}, {Phase: PodRunning, Deleting: true, HasMetric: true, Milli: 900000}}}, 2},
		{"pending pods count as zero on scale-up", 2, PodCounts{}, MetricInput{Source: PodsMetric, Target: Target{Type: AverageValueTarget, Milli: 10000},
			Pods: []PodMetric{{Phase: PodRunning, HasMetric: true, Milli: 40000}, {Phase: PodPending}}}, 4},
		{"object value: ratio times ready pods", 3, PodCounts{Total: 3, Ready: 3}, MetricInput{Source: ObjectMetric, Target: Target{Type: ValueTarget, Milli: 10000}, Milli: 20000}, 6},
		{"object value: only ready pods multiply", 3, PodCounts{Total: 3, Ready: 2}, MetricInput{Source: ObjectMetric, Target: Target{Type: ValueTarget, Milli: 10000}, Milli: 20000}, 4},
		{"object value wakes from zero", 0, PodCounts{}, MetricInput{Source: ObjectMetric, Target: Target{Type: ValueTarget, Milli: 10000}, Milli: 25000}, 3},
		{"object value keeps zero at zero", 0, PodCounts{}, MetricInput{Source: ObjectMetric, Target: Target{Type: ValueTarget, Milli: 10000}}, 0},
		{"object average value", 1, PodCounts{Total: 1, Ready: 1}, MetricInput{Source: ObjectMetric, Target: Target{Type: AverageValueTarget, Milli: 2000}, Milli: 8600}, 5},
		{"external values are summed", 1, PodCounts{Total: 1, Ready: 1}, MetricInput{Source: ExternalMetric, Target: Target{Type: ValueTarget, Milli: 2000}, ExternalMilli: []int64{4000, 4600}}, 5},
		{"external average value within tolerance", 4, PodCounts{Total: 4, Ready: 4}, MetricInput{Source: ExternalMetric, Target: Target{Type: AverageValueTarget, Milli: 2000}, ExternalMilli: []int64{8500}}, 4},
		{"external average value scales down", 4, PodCounts{Total: 4, Ready: 4}, MetricInput{Source: ExternalMetric, Target: Target{Type: AverageValueTarget, Milli: 2000}, ExternalMilli: []int64{3000}}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReplicasForMetric(tt.current, tt.pods, tt.metric, DefaultTolerance)
			if err != nil {
				t.Fatalf("ReplicasForMetric: %v", err)
			}
			if got != tt.want {
				t.Fatalf("ReplicasForMetric = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestReplicasForMetricErrors(t *testing.T) {
	tests := []struct {
		name   string
		metric MetricInput
		want   error
	}{
		{"no pods", cpuUtil(50, nil), ErrNoPods},
		{"only unready pods", cpuUtil(50, cpuPods([]int64{100}, []bool{false})), ErrNoReadyMetrics},
		{"missing request", cpuUtil(50, []PodMetric{{Phase: PodRunning, HasMetric: true, Milli: 10}}), ErrMissingRequest},
		{"zero target", MetricInput{Source: ObjectMetric, Target: Target{Type: ValueTarget}}, ErrInvalidTarget},
		{"utilization on pods metric", MetricInput{Source: PodsMetric, Target: Target{Type: UtilizationTarget, Utilization: 50}}, ErrInvalidTarget},
		{"value on pods metric", MetricInput{Source: PodsMetric, Target: Target{Type: ValueTarget, Milli: 5}}, ErrInvalidTarget},
		{"unknown source", MetricInput{Source: "Nope", Target: Target{Type: ValueTarget, Milli: 5}}, ErrInvalidTarget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReplicasForMetric(3, PodCounts{Total: 3, Ready: 3}, tt.metric, DefaultTolerance)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestHPARecommendationTakesMaxAndGuardsFailures(t *testing.T) {
	up := MetricInput{Source: ObjectMetric, Target: Target{Type: ValueTarget, Milli: 1000}, Milli: 3000}  // 3 → 9
	down := MetricInput{Source: ObjectMetric, Target: Target{Type: ValueTarget, Milli: 1000}, Milli: 500} // 3 → 2
	broken := MetricInput{Source: ObjectMetric, Err: errors.New("timeout")}
	pods := PodCounts{Total: 3, Ready: 3}
	tests := []struct {
		name    string
		metrics []MetricInput
		want    int32
		wantErr bool
	}{
		{"max of proposals", []MetricInput{down, up}, 9, false},
		{"scale up despite a broken metric", []MetricInput{broken, up}, 9, false},
		{"no scale down with a broken metric", []MetricInput{broken, down}, 0, true},
		{"all broken", []MetricInput{broken}, 0, true},
		{"none configured", nil, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := HPARecommendation(3, pods, tt.metrics, DefaultTolerance)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("HPARecommendation = %d, %v; want %d, err %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestToleranceCanDifferPerDirection(t *testing.T) {
	m := MetricInput{Source: ObjectMetric, Target: Target{Type: ValueTarget, Milli: 1000}, Milli: 1150}
	pods := PodCounts{Total: 10, Ready: 10}
	if got, _ := ReplicasForMetric(10, pods, m, DefaultTolerance); got != 12 {
		t.Fatalf("default tolerance: got %d, want 12", got)
	}
	if got, _ := ReplicasForMetric(10, pods, m, Tolerance{Down: 0.1, Up: 0.2}); got != 10 {
		t.Fatalf("up tolerance 0.2: got %d, want 10", got)
	}
}

func TestCPUSampleUnready(t *testing.T) {
	now := time.Unix(10_000, 0)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	tests := []struct {
		name string
		p    PodReadiness
		want bool
	}{
		{"no ready condition", PodReadiness{Started: ago(time.Hour)}, true},
		{"initialising, not ready", PodReadiness{Started: ago(time.Minute), HasReadyCondition: true, ReadyTransition: ago(time.Minute)}, true},
		{"initialising, sample straddles readiness", PodReadiness{Started: ago(time.Minute), HasReadyCondition: true, Ready: true,
			ReadyTransition: ago(20 * time.Second), SampleTime: ago(5 * time.Second), SampleWindow: 30 * time.Second}, true},
		{"initialising, full window since ready", PodReadiness{Started: ago(2 * time.Minute), HasReadyCondition: true, Ready: true,
			ReadyTransition: ago(90 * time.Second), SampleTime: ago(5 * time.Second), SampleWindow: 30 * time.Second}, false},
		{"old pod never ready", PodReadiness{Started: ago(time.Hour), HasReadyCondition: true, ReadyTransition: ago(time.Hour - 10*time.Second)}, true},
		{"old pod became unready later", PodReadiness{Started: ago(time.Hour), HasReadyCondition: true, ReadyTransition: ago(time.Minute)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CPUSampleUnready(tt.p, now, DefaultCPUInitializationPeriod, DefaultInitialReadinessDelay); got != tt.want {
				t.Fatalf("CPUSampleUnready = %v, want %v", got, tt.want)
			}
		})
	}
}
