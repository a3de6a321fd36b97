package agones

import (
	"reflect"
	"strings"
	"testing"
)

func TestCount(t *testing.T) {
	servers := []GameServer{
		{Name: "a1", Node: "n1", State: StateAllocated},
		{Name: "a2", Node: "n1", State: StateReady},
		{Name: "b1", Node: "n2", State: StateReady},
		{Name: "b2", Node: "n2", State: StateReady},
		{Name: "b3", Node: "n2", State: StateScheduled},
		{Name: "b4", Node: "n2", State: StateAllocated, Deleting: true},
		{Name: "c1", Node: "n3", State: StateReserved},
		{Name: "d1", Node: "n4", State: "Draining"},
		{Name: "e1", Node: "n5", State: StateShutdown},
		{Name: "e2", Node: "n5", State: StateUnhealthy},
		{Name: "p1", State: StateCreating},
		{Name: "p2", State: StatePortAllocation},
	}
	o := Count(servers)
	want := map[string]Slots{
		"n1": {InUse: 1, Ready: 1},
		"n2": {Ready: 2, Starting: 1, Stopping: 1},
		"n3": {InUse: 1},
		"n4": {Unknown: 1},
		"n5": {Stopping: 2},
	}
	if !reflect.DeepEqual(o.Nodes, want) {
		t.Errorf("nodes %+v\nwant %+v", o.Nodes, want)
	}
	if o.Unscheduled != (Slots{Starting: 2}) {
		t.Errorf("unscheduled %+v", o.Unscheduled)
	}
	if got := o.BusyNodes(); !reflect.DeepEqual(got, []string{"n1", "n3", "n4"}) {
		t.Errorf("busy nodes %v: Allocated, Reserved and unknown states block deletion; Ready, Starting and stopping ones do not", got)
	}
	if got := o.InUse(); got != 3 {
		t.Errorf("in use %d, want 3", got)
	}
	if got := o.Nodes["n2"].Free(); got != 3 {
		t.Errorf("n2 free %d, want 3 (2 Ready + 1 Scheduled)", got)
	}
}

func TestFromObject(t *testing.T) {
	for _, tc := range []struct {
		name    string
		obj     map[string]any
		want    GameServer
		wantErr string
	}{
		{"allocated", map[string]any{
			"metadata": map[string]any{"name": "gs-1", "namespace": "games"},
			"status":   map[string]any{"state": "Allocated", "nodeName": "n1"},
		}, GameServer{Namespace: "games", Name: "gs-1", Node: "n1", State: StateAllocated}, ""},
		{"deleting without state", map[string]any{
			"metadata": map[string]any{"name": "gs-2", "namespace": "games", "deletionTimestamp": "2026-12-07T10:00:00Z"},
		}, GameServer{Namespace: "games", Name: "gs-2", Deleting: true}, ""},
		{"no state yet", map[string]any{"metadata": map[string]any{"name": "gs-3", "namespace": "games"}}, GameServer{}, "games/gs-3 has no status.state"},
		{"no name", map[string]any{"status": map[string]any{"state": "Ready"}}, GameServer{}, "without metadata.name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromObject(tc.obj)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
