// Package e2e holds Swell's end-to-end suites. They run against real
// components that internal/testenv starts on loopback: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kwok nodes, the process node and
// the brokers. One environment is shared by the package's tests.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/swell-autoscaler/swell/internal/testenv"
)

// env is the environment shared by this package's tests; TestMain owns it.
var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if err := testenv.CheckBinaries(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	opts := testenv.FullCluster(3)
	opts.Redis, opts.RabbitMQ, opts.NATS, opts.Kafka = true, true, true, true
	opts.MetricsServer = true
	opts.CustomMetrics = true
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	e, err := testenv.Start(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start environment:", err)
		return 1
	}
	env = e
	fmt.Printf("e2e: environment ready in %s (%s)\n", time.Since(start).Round(time.Millisecond), formatTimings(e.Timings))
	code := m.Run()
	stopController()
	e.Stop()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: failed; component logs kept in %s\n%s", e.Dir, e.LogTails(3000))
		return code
	}
	_ = os.RemoveAll(e.Dir)
	return code
}

func formatTimings(t map[string]time.Duration) string {
	order := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "process-node", "control-plane", "metrics-server", "custom-metrics", "redis", "rabbitmq", "nats", "kafka"}
	s := ""
	for _, k := range order {
		if d, ok := t[k]; ok {
			if s != "" {
				s += ", "
			}
			s += fmt.Sprintf("%s %s", k, d.Round(time.Millisecond))
		}
	}
	return s
}
