package policy

import "testing"

func TestQueueSizingDesired(t *testing.T) {
	tests := []struct {
		name   string
		sizing QueueSizing
		sample QueueSample
		want   int32
	}{
		{"integer factor multiplies", QueueSizing{MinReplicas: 0, MaxReplicas: 100, ScalingFactor: 2}, QueueSample{Queued: 7}, 14},
		{"fractional factor, no float noise", QueueSizing{MaxReplicas: 100, ScalingFactor: 0.1}, QueueSample{Queued: 30}, 3},
		{"fraction rounds up", QueueSizing{MaxReplicas: 100, ScalingFactor: 0.1}, QueueSample{Queued: 31}, 4},
		{"active queue gets at least one pod", QueueSizing{MaxReplicas: 10, ScalingFactor: 0.001}, QueueSample{Queued: 1}, 1},
		{"clamped to max", QueueSizing{MaxReplicas: 5, ScalingFactor: 1}, QueueSample{Queued: 1000}, 5},
		{"clamped to min", QueueSizing{MinReplicas: 3, MaxReplicas: 5, ScalingFactor: 1}, QueueSample{Queued: 1}, 3},
		{"empty queue scales to zero", QueueSizing{MaxReplicas: 5, ScalingFactor: 1}, QueueSample{}, 0},
		{"empty queue keeps min", QueueSizing{MinReplicas: 2, MaxReplicas: 5, ScalingFactor: 1}, QueueSample{}, 2},
		{"at activation threshold stays asleep", QueueSizing{MaxReplicas: 5, ScalingFactor: 1, ActivationThreshold: 3}, QueueSample{Queued: 3}, 0},
		{"above activation threshold wakes", QueueSizing{MaxReplicas: 5, ScalingFactor: 1, ActivationThreshold: 3}, QueueSample{Queued: 4}, 4},
		{"in-flight ignored by default (QScaler)", QueueSizing{MaxReplicas: 9, ScalingFactor: 1}, QueueSample{Queued: 1, InFlight: 5}, 1},
		{"in-flight counted when asked", QueueSizing{MaxReplicas: 9, ScalingFactor: 1, CountInFlight: true}, QueueSample{Queued: 1, InFlight: 5}, 6},
		{"QScaler's -1 error backlog is not negative pods", QueueSizing{MinReplicas: 1, MaxReplicas: 9, ScalingFactor: 1}, QueueSample{Queued: -1}, 1},
		{"min above max: max wins", QueueSizing{MinReplicas: 8, MaxReplicas: 4, ScalingFactor: 1}, QueueSample{Queued: 100}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.sizing.Desired(tt.sample); got != tt.want {
				t.Fatalf("Desired(%+v) = %d, want %d", tt.sample, got, tt.want)
			}
		})
	}
}

func TestQueueSizingValidate(t *testing.T) {
	tests := []struct {
		name    string
		sizing  QueueSizing
		wantErr bool
	}{
		{"valid", QueueSizing{MaxReplicas: 1, ScalingFactor: 0.5}, false},
		{"zero factor", QueueSizing{MaxReplicas: 1}, true},
		{"negative min", QueueSizing{MinReplicas: -1, MaxReplicas: 1, ScalingFactor: 1}, true},
		{"min over max", QueueSizing{MinReplicas: 2, MaxReplicas: 1, ScalingFactor: 1}, true},
		{"zero max", QueueSizing{ScalingFactor: 1}, true},
		{"negative activation", QueueSizing{MaxReplicas: 1, ScalingFactor: 1, ActivationThreshold: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.sizing.Validate(); (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}
