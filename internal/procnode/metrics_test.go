package procnode

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

func TestGroupUsageOfOwnProcessGroup(t *testing.T) {
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) { // burn a little CPU
	}
	cpuNs, rss := groupUsage(processGroups()[syscall.Getpgrp()])
	if cpuNs < uint64(50*time.Millisecond) {
		t.Errorf("CPU of this process group %v, want at least the 50ms just burnt", time.Duration(cpuNs))
	}
	if rss == 0 {
		t.Error("VmRSS of this process group is 0")
	}
}

func TestResourceMetricsText(t *testing.T) {
	n := &Node{name: "n", pods: map[types.UID]*podRunner{}}
	now := time.Now()
	out := string(n.resourceMetrics(now))
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	for _, name := range []string{"node_cpu_usage_seconds_total", "node_memory_working_set_bytes"} {
		var found bool
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 3 && f[0] == name {
				found = true
				if v, err := strconv.ParseFloat(f[1], 64); err != nil || v <= 0 {
					t.Errorf("%s value %q, want > 0", name, f[1])
				}
				if f[2] != ts {
					t.Errorf("%s timestamp %q, want %s", name, f[2], ts)
				}
			}
		}
		if !found {
			t.Errorf("no %s sample in:\n%s", name, out)
		}
	}
	for _, family := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_start_time_seconds", "pod_cpu_usage_seconds_total", "pod_memory_working_set_bytes"} {
		if !strings.Contains(out, "# TYPE "+family+" ") {
			t.Errorf("no TYPE line for %s", family)
		}
	}
}
