package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestQWorkerFreshStartActsBeforeStatusesAreWritten starts the shipped
// `swell controller` binary, with a client limit of 10 requests/s, on 150
// QWorkers it has never seen: each one's first status is a write, 15 s of
// them at that limit. Once 20 are written, a task is pushed onto one
// QWorker's queue. An admission webhook records every write in the
// namespace in the order the API server admits it, and from that record:
//
//   - the task's pod is created while most first statuses are still
//     unwritten: a pass does not wait for its status write, so the task's
//     pass is not queued behind the passes of the 130 QWorkers whose first
//     status still waits (written inline, the pod came after 118 of 150);
//   - every idle QWorker's status is written exactly once: the ScalerConfig's
//     first health check wakes all 150 while their writes still wait, and
//     the controller reads the status it asked for, not the cache's older
//     copy, so it writes nothing twice;
//   - in the end every QWorker has its status.
func TestQWorkerFreshStartActsBeforeStatusesAreWritten(t *testing.T) {
	startController(t) // CRDs and the shared controller, which the webhook keeps out of this namespace
	const n = 150
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	bin := buildSwell(t)
	audit := startWriteAudit(ctx, t, ns)
	user := grantControllerRBAC(ctx, t, ns, "fresh-start")[0]
	if err := kube.Create(ctx, redisScalerConfig(ns, "redis", env.RedisAddr)); err != nil {
		t.Fatalf("create ScalerConfig: %v", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	probe := fmt.Sprintf("qw-%05d", n-1)
	createQWorkers(ctx, t, ns, n, map[string]bool{probe: true})

	started := time.Now()
	p := startSwell(t, bin, "fresh-start", "controller", "--kubeconfig", impersonatingKubeconfig(t, user), "--namespace", ns,
		"--kube-api-qps=10", "--kube-api-burst=10", "--node-pools=false", "--metrics-bind-address=0",
		"--health-probe-bind-address=0", "--dev-logs", "--egress-allow=127.0.0.1/32")
	waitFor(ctx, t, "20 first statuses", func() (bool, error) {
		return len(statusWritesPerQWorker(audit.all(), user)) >= 20, nil
	})
	if err := rdb.LPush(ctx, ns+"-"+probe, "t0").Err(); err != nil {
		t.Fatal(err)
	}
	waitForRunningPods(ctx, t, ns, probe, 1)
	waitFor(ctx, t, "every QWorker's first status", func() (bool, error) {
		if exited(p) {
			return false, fmt.Errorf("controller exited: %w\n%s", p.exitErr, p.logTail())
		}
		return len(statusWritesPerQWorker(audit.all(), user)) == n, nil
	})
	t.Logf("all %d first statuses written %s after the controller started", n, time.Since(started).Round(100*time.Millisecond))

	writes := audit.all()
	before, created := 0, false
	for _, w := range writes {
		if w.User != user {
			continue
		}
		if w.Resource == "pods" && w.Operation == "CREATE" && w.QWorker == probe {
			created = true
			break
		}
		if w.Resource == "qworkers/status" {
			before++
		}
	}
	if !created {
		t.Fatalf("no pod create for %s in the audit: %s", probe, audit.summary())
	}
	t.Logf("the task's pod was created after %d of the %d first status writes", before, n)
	if before >= n/2 {
		t.Errorf("the task's pod came after %d status writes, want it ahead of most of the %d (passes must not wait for status writes)", before, n)
	}
	for name, c := range statusWritesPerQWorker(writes, user) {
		if name != probe && c != 1 {
			t.Errorf("idle QWorker %s: %d status writes, want exactly 1", name, c)
		}
	}
}

// statusWritesPerQWorker counts user's status writes per QWorker.
func statusWritesPerQWorker(writes []write, user string) map[string]int {
	out := map[string]int{}
	for _, w := range writes {
		if w.User == user && w.Resource == "qworkers/status" {
			out[w.Name]++
		}
	}
	return out
}
