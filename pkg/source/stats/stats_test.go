package stats

import (
	"strings"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Report
		wantErr string
	}{
		{in: `{"tasks":3,"busySeconds":1.5,"concurrency":2}`, want: Report{Tasks: 3, BusySeconds: 1.5, Concurrency: 2}},
		{in: Encode(Report{Tasks: 1, BusySeconds: 0.12345, Concurrency: 1}), want: Report{Tasks: 1, BusySeconds: 0.123, Concurrency: 1}},
		{in: `{"tasks":-1,"busySeconds":1,"concurrency":1}`, wantErr: "tasks ≥ 0"},
		{in: `{"tasks":1,"busySeconds":1,"concurrency":0}`, wantErr: "concurrency ≥ 1"},
		{in: `{"tasks":1,"busySeconds":-2,"concurrency":1}`, wantErr: "busySeconds ≥ 0"},
		{in: `tasks=3`, wantErr: Annotation},
		{in: `{"tasks":5,"busySeconds":1,"concurrency":1,"failed":2,"deadLettered":1}`, want: Report{Tasks: 5, BusySeconds: 1, Concurrency: 1, Failed: 2, DeadLettered: 1}},
		{in: `{"tasks":1,"busySeconds":1,"concurrency":1,"failed":-1}`, wantErr: "failed ≤ tasks"},
		{in: `{"tasks":1,"busySeconds":1,"concurrency":1,"failed":2}`, wantErr: "failed ≤ tasks"},
		{in: `{"tasks":1,"busySeconds":1,"concurrency":1,"deadLettered":-3}`, wantErr: "deadLettered ≥ 0"},
	} {
		got, err := Decode(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Decode(%q) err = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Decode(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestEncodeLeavesOutZeroFailures(t *testing.T) {
	for _, tc := range []struct {
		in   Report
		want string
	}{
		{Report{Tasks: 3, BusySeconds: 1.5, Concurrency: 2}, `{"tasks":3,"busySeconds":1.5,"concurrency":2}`},
		{Report{Tasks: 3, BusySeconds: 1.5, Concurrency: 2, Failed: 1}, `{"tasks":3,"busySeconds":1.5,"concurrency":2,"failed":1}`},
		{Report{Tasks: 3, BusySeconds: 1.5, Concurrency: 2, Failed: 2, DeadLettered: 1}, `{"tasks":3,"busySeconds":1.5,"concurrency":2,"failed":2,"deadLettered":1}`},
	} {
		if got := Encode(tc.in); got != tc.want {
			t.Errorf("Encode(%+v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestRecorderCountsFailuresAndDeadLetters(t *testing.T) {
	r := NewRecorder(1)
	r.Task(time.Second)
	r.Failure(2 * time.Second)
	r.DeadLettered(1)
	r.DeadLettered(0) // a smaller count never lowers the report
	want := Report{Tasks: 2, BusySeconds: 3, Concurrency: 1, Failed: 1, DeadLettered: 1}
	if got := r.Current(); got != want {
		t.Fatalf("report = %+v, want %+v", got, want)
	}
	r.Written(time.Unix(0, 0), r.Current())
	r.DeadLettered(2)
	if !r.Changed() {
		t.Fatal("a new dead letter must make a write due")
	}
}

func TestRecorderWritesOnlyChangesAtMostEveryInterval(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := NewRecorder(0)
	if _, due := r.Due(t0, 10*time.Second); due {
		t.Fatal("an idle worker must not write")
	}
	r.Task(2 * time.Second)
	rep, due := r.Due(t0, 10*time.Second)
	if !due || rep != (Report{Tasks: 1, BusySeconds: 2, Concurrency: 1}) {
		t.Fatalf("first report = %+v, %v", rep, due)
	}
	r.Written(t0, rep)
	r.Task(time.Second)
	if _, due := r.Due(t0.Add(5*time.Second), 10*time.Second); due {
		t.Fatal("wrote twice within the interval")
	}
	rep, due = r.Due(t0.Add(10*time.Second), 10*time.Second)
	if !due || rep.Tasks != 2 || rep.BusySeconds != 3 {
		t.Fatalf("second report = %+v, %v", rep, due)
	}
	r.Written(t0.Add(10*time.Second), rep)
	if _, due := r.Due(t0.Add(time.Hour), 10*time.Second); due || r.Changed() {
		t.Fatal("nothing changed, yet a write is due")
	}
}

func TestTrackerCountsEachTaskOnce(t *testing.T) {
	one := func(tasks int64, busy float64) Report { return Report{Tasks: tasks, BusySeconds: busy, Concurrency: 1} }
	steps := []struct {
		name      string
		reports   map[string]Report
		wantTasks int64
		wantBusy  float64
		wantConc  int32
	}{
		{"baseline counts nothing done before", map[string]Report{"a": one(100, 50)}, 0, 0, 1},
		{"change since last seen", map[string]Report{"a": one(110, 55)}, 10, 5, 1},
		{"new pod counts whole", map[string]Report{"a": one(110, 55), "b": one(4, 2)}, 14, 7, 1},
		{"restart reads as a fresh start", map[string]Report{"a": one(3, 1), "b": one(6, 3)}, 19, 9, 1},
		{"pod gone keeps its counted work", map[string]Report{"b": {Tasks: 8, BusySeconds: 4, Concurrency: 4}}, 21, 10, 4},
		{"nobody reports: totals and concurrency stay", map[string]Report{}, 21, 10, 4},
	}
	var tr Tracker
	for _, s := range steps {
		p := tr.Observe(s.reports)
		if p.Tasks != s.wantTasks || p.BusySeconds != s.wantBusy || p.Concurrency != s.wantConc || p.Reporting != len(s.reports) {
			t.Fatalf("%s: got %+v, want tasks %d busy %g concurrency %d", s.name, p, s.wantTasks, s.wantBusy, s.wantConc)
		}
	}
}

func TestTrackerCountsFailuresAndDeadLettersOnce(t *testing.T) {
	rep := func(tasks, failed, dead int64) Report {
		return Report{Tasks: tasks, BusySeconds: float64(tasks), Concurrency: 1, Failed: failed, DeadLettered: dead}
	}
	steps := []struct {
		name                 string
		reports              map[string]Report
		wantFailed, wantDead int64
	}{
		{"baseline", map[string]Report{"a": rep(10, 4, 1)}, 0, 0},
		{"growth", map[string]Report{"a": rep(12, 6, 2)}, 2, 1},
		{"new pod counts whole", map[string]Report{"a": rep(12, 6, 2), "b": rep(3, 3, 1)}, 5, 2},
		{"only failures went down: a restart", map[string]Report{"a": rep(12, 1, 0), "b": rep(3, 3, 1)}, 6, 2},
		{"pod gone keeps its count", map[string]Report{"a": rep(13, 1, 0)}, 6, 2},
	}
	var tr Tracker
	for _, s := range steps {
		p := tr.Observe(s.reports)
		if p.Failed != s.wantFailed || p.DeadLettered != s.wantDead {
			t.Fatalf("%s: got %+v, want failed %d dead-lettered %d", s.name, p, s.wantFailed, s.wantDead)
		}
	}
}
