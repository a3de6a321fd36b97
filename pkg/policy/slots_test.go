package policy

import (
	"reflect"
	"testing"
)

const gi = int64(1) << 30

func TestFreeSlots(t *testing.T) {
	slot := Resources{"cpu": 2000, "memory": 4 * gi}
	tests := []struct {
		name string
		node NodeCapacity
		slot Resources
		want int64
	}{
		{"cpu bound", NodeCapacity{Allocatable: Resources{"cpu": 8000, "memory": 64 * gi}}, slot, 4},
		{"memory bound", NodeCapacity{Allocatable: Resources{"cpu": 8000, "memory": 10 * gi}}, slot, 2},
		{"requests subtract", NodeCapacity{Allocatable: Resources{"cpu": 8000, "memory": 64 * gi}, Requested: Resources{"cpu": 5000}}, slot, 1},
		{"overcommitted node", NodeCapacity{Allocatable: Resources{"cpu": 8000, "memory": 64 * gi}, Requested: Resources{"cpu": 9000}}, slot, 0},
		{"missing resource", NodeCapacity{Allocatable: Resources{"cpu": 8000}}, slot, 0},
		{"extended resource", NodeCapacity{Allocatable: Resources{"cpu": 8000, "nvidia.com/gpu": 1}}, Resources{"cpu": 100, "nvidia.com/gpu": 1}, 1},
		{"cordoned", NodeCapacity{Allocatable: Resources{"cpu": 8000, "memory": 64 * gi}, Cordoned: true}, slot, 0},
		{"empty slot fits nowhere", NodeCapacity{Allocatable: Resources{"cpu": 8000}}, Resources{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FreeSlots(tt.node, tt.slot); got != tt.want {
				t.Fatalf("FreeSlots = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestBufferWanted(t *testing.T) {
	tests := []struct {
		b     Buffer
		inUse int64
		want  int64
	}{
		{Buffer{Absolute: 2}, 100, 2},
		{Buffer{Percent: 10}, 25, 3},
		{Buffer{Absolute: 5, Percent: 10}, 25, 5},
		{Buffer{Percent: 10}, 0, 0},
	}
	for _, tt := range tests {
		if got := tt.b.Wanted(tt.inUse); got != tt.want {
			t.Errorf("%+v.Wanted(%d) = %d, want %d", tt.b, tt.inUse, got, tt.want)
		}
	}
}

func TestPlanBuffer(t *testing.T) {
	slot := Resources{"cpu": 1000}
	tmpl := Resources{"cpu": 4000}
	node := func(name string, requested int64) NodeCapacity {
		return NodeCapacity{Name: name, Allocatable: tmpl, Requested: Resources{"cpu": requested}}
	}
	tests := []struct {
		name  string
		nodes []NodeCapacity
		b     Buffer
		want  BufferPlan
	}{
		{"deficit adds whole nodes", []NodeCapacity{node("a", 4000)}, Buffer{Absolute: 5}, BufferPlan{Free: 0, Wanted: 5, AddNodes: 2}},
		{"free spread across nodes counts per node", []NodeCapacity{node("a", 3500), node("b", 3500)}, Buffer{Absolute: 1}, BufferPlan{Free: 0, Wanted: 1, AddNodes: 1}},
		{"surplus empty nodes are listed", []NodeCapacity{node("a", 3000), node("b", 0), node("c", 0)}, Buffer{Absolute: 4}, BufferPlan{Free: 9, Wanted: 4, Surplus: []string{"b"}}},
		{"no surplus when buffer is tight", []NodeCapacity{node("a", 3000), node("b", 0)}, Buffer{Absolute: 4}, BufferPlan{Free: 5, Wanted: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PlanBuffer(tt.nodes, slot, 3, tt.b, tmpl)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("PlanBuffer = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPlanBufferTemplateTooSmall(t *testing.T) {
	got := PlanBuffer(nil, Resources{"cpu": 8000}, 0, Buffer{Absolute: 1}, Resources{"cpu": 4000})
	if got.AddNodes != 0 || got.Wanted != 1 {
		t.Fatalf("PlanBuffer = %+v, want no nodes added for a template that cannot hold a slot", got)
	}
}
