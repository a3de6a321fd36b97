package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/controller/shard"
)

// shardQWorkers is how many QWorkers the sharding test spreads over three
// replicas (SWELL_E2E_SHARD_QWORKERS overrides it).
func shardQWorkers(t *testing.T) int {
	t.Helper()
	if v := os.Getenv("SWELL_E2E_SHARD_QWORKERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 30 {
			t.Fatalf("SWELL_E2E_SHARD_QWORKERS=%q: want a number >= 30", v)
		}
		return n
	}
	return 3000
}

// TestShardRingSharesQWorkersAndSurvivesKill runs three `swell controller
// --shard-ring` processes, each as its own ServiceAccount with the shipped
// RBAC (role.yaml, the leader-election Role, config/rbac/sharding), over
// thousands of QWorkers on one Redis. Every QWorker is served by one
// replica; then one replica is killed with SIGKILL while the busy pools'
// backlog doubles. An admission webhook records every pod and QWorker
// write with its author: the dead replica's QWorkers must be picked up
// within 30 s, every busy pool must reach its new size with exactly one
// create per pod (no duplicate from two replicas acting at once), and no
// QWorker may be written by two replicas in interleaved turns.
func TestShardRingSharesQWorkersAndSurvivesKill(t *testing.T) {
	startController(t) // CRDs and the shared controller, which the webhook keeps out of this namespace
	n := shardQWorkers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	bin := buildSwell(t)
	audit := startWriteAudit(ctx, t, ns)
	names := []string{"shard-0", "shard-1", "shard-2"}
	users := grantControllerRBAC(ctx, t, ns, names...)
	grantShardingRole(ctx, t, ns, names)
	if err := kube.Create(ctx, redisScalerConfig(ns, "redis", env.RedisAddr)); err != nil {
		t.Fatalf("create ScalerConfig: %v", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })

	procs := map[string]*swellProcess{}
	for i, name := range names {
		procs[name] = startSwell(t, bin, "shard-"+strconv.Itoa(i), shardArgs(impersonatingKubeconfig(t, users[i]), ns, name)...)
	}
	waitFor(ctx, t, "three live shard leases", func() (bool, error) {
		return len(liveShardMembers(ctx, t, ns)) == 3, nil
	})

	// n QWorkers, one in every n/12 busy: 4 tasks at 0.5 pods per task.
	busy := map[string]bool{}
	for i := 0; i < n; i += n / 12 {
		name := fmt.Sprintf("qw-%05d", i)
		busy[name] = true
		for j := range 4 {
			rdb.LPush(ctx, ns+"-"+name, fmt.Sprintf("t%d", j))
		}
	}
	created := time.Now()
	createQWorkers(ctx, t, ns, n, busy)
	t.Logf("created %d QWorkers in %s", n, time.Since(created).Round(time.Millisecond))
	var owners map[string]string
	waitFor(ctx, t, "every QWorker owned and decided, busy pools at 2 pods", func() (bool, error) {
		var done bool
		owners, done = shardOwners(ctx, t, ns, busy, 2)
		return done, nil
	})
	t.Logf("%d QWorkers served %s after creation began: %s", n, time.Since(created).Round(time.Second), ownerCounts(owners))
	for _, name := range names {
		if c := countOwned(owners, name); c < n/3/2 {
			t.Errorf("%s serves %d of %d QWorkers, want about a third", name, c, n)
		}
	}
	for name := range busy {
		waitForRunningPods(ctx, t, ns, name, 2)
	}

	// Kill one replica; double every busy backlog at once.
	victim := "shard-1"
	var theirs []string
	for qw, o := range owners {
		if o == victim {
			theirs = append(theirs, qw)
		}
	}
	killed := time.Now()
	if err := syscall.Kill(procs[victim].cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for name := range busy {
		for j := range 4 {
			rdb.LPush(ctx, ns+"-"+name, fmt.Sprintf("u%d", j))
		}
	}
	var pickup time.Duration
	waitFor(ctx, t, "the killed replica's QWorkers picked up", func() (bool, error) {
		var done bool
		owners, done = shardOwners(ctx, t, ns, busy, 4)
		if countOwned(owners, victim) == 0 && pickup == 0 {
			pickup = time.Since(killed)
		}
		return done && countOwned(owners, victim) == 0, nil
	})
	t.Logf("killed %s (%d QWorkers): all relabelled %s after the kill, busy pools at 4 pods %s after; now %s",
		victim, len(theirs), pickup.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond), ownerCounts(owners))
	if pickup > 30*time.Second {
		t.Errorf("pickup took %s, want within 30 s", pickup)
	}
	for name := range busy {
		waitForRunningPods(ctx, t, ns, name, 4)
	}
	checkShardWrites(t, audit.all(), users, busy, 4)
	for _, name := range names {
		if name != victim && exited(procs[name]) {
			t.Errorf("%s exited: %v\n%s", name, procs[name].exitErr, procs[name].logTail())
		}
	}
}

// shardArgs are the flags of one ring member in ns, with lease timings
// short enough for a pickup well within 30 s and long enough that a busy
// shared machine does not make a replica miss its renew deadline. A
// survivor takes a dead replica's objects with one label write each, so
// the client rate limit is raised as docs/install.md advises for a ring
// of thousands of objects (at the default 50/s, 500 objects take 10 s).
func shardArgs(kubeconfig, ns, id string) []string {
	return []string{"controller", "--kubeconfig", kubeconfig,
		"--shard-ring", "swell", "--shard-identity", id, "--leader-election-namespace", ns, "--namespace", ns,
		"--leader-elect-lease-duration=6s", "--leader-elect-renew-deadline=4s", "--leader-elect-retry-period=1s",
		"--kube-api-qps=200", "--kube-api-burst=400",
		"--node-pools=false", "--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--graceful-shutdown=30s", "--dev-logs", "--egress-allow=127.0.0.1/32"}
}

// grantShardingRole binds config/rbac/sharding's ClusterRole to the
// ServiceAccounts names of ns.
func grantShardingRole(ctx context.Context, t *testing.T, ns string, names []string) {
	t.Helper()
	var subjects []rbacv1.Subject
	for _, n := range names {
		subjects = append(subjects, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: n, Namespace: ns})
	}
	bindClusterRoleFile(ctx, t, "../../config/rbac/sharding/role.yaml", ns+"-sharding", subjects)
}

// liveShardMembers lists the ring's live members from its Leases.
func liveShardMembers(ctx context.Context, t *testing.T, ns string) []string {
	t.Helper()
	leases, err := env.Clientset.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: shard.LabelRing + "=swell"})
	if err != nil {
		t.Fatal(err)
	}
	var live []string
	for i := range leases.Items {
		l := &leases.Items[i]
		if l.Spec.RenewTime == nil {
			continue
		}
		if id, ok := shard.LiveMember(l, "swell", l.Spec.RenewTime.Time, time.Now()); ok {
			live = append(live, id)
		}
	}
	return live
}

// createQWorkers creates n kwok QWorkers in ns (0–10 pods, 0.5 per task,
// each on its own queue; the busy ones polled every second, the others
// every 5 s) from eight goroutines.
func createQWorkers(ctx context.Context, t *testing.T, ns string, n int, busy map[string]bool) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				name := fmt.Sprintf("qw-%05d", i)
				qw := kwokQWorker(ns, name, ns+"-"+name, 0, 10, 0.5)
				if !busy[name] {
					qw.Spec.ScaleConfig.PollingIntervalSeconds = ptr.To[int32](5)
				}
				if err := kube.Create(ctx, qw); err != nil {
					errs <- fmt.Errorf("create %s: %w", name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// shardOwners maps every QWorker of ns to its owner label, and reports
// whether every one has an owner, has been
// decided (its status names its selector), and every busy one wants
// busyPods.
func shardOwners(ctx context.Context, t *testing.T, ns string, busy map[string]bool, busyPods int32) (map[string]string, bool) {
	t.Helper()
	var list qv1.QWorkerList
	if err := kube.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	owners := map[string]string{}
	done := true
	for _, qw := range list.Items {
		owners[qw.Name] = qw.Labels[shard.LabelOwner]
		switch {
		case owners[qw.Name] == "", qw.Status.Selector == "":
			done = false
		case busy[qw.Name] && qw.Status.DesiredReplicas != busyPods:
			done = false
		}
	}
	return owners, done
}

func countOwned(owners map[string]string, id string) int {
	n := 0
	for _, o := range owners {
		if o == id {
			n++
		}
	}
	return n
}

// ownerCounts prints how many QWorkers each replica serves.
func ownerCounts(owners map[string]string) string {
	counts := map[string]int{}
	for _, o := range owners {
		counts[o]++
	}
	var ids []string
	for id := range counts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var parts []string
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("%s %d", id, counts[id]))
	}
	return strings.Join(parts, ", ")
}

// checkShardWrites checks the replicas' writes the webhook saw: each busy
// pool's pods were created exactly wantPods times and none deleted, no idle
// QWorker got a pod, and each QWorker's writes came from its replicas in
// turns (A…A B…B), never interleaved.
func checkShardWrites(t *testing.T, writes []write, users []string, busy map[string]bool, wantPods int) {
	t.Helper()
	ours := func(u string) bool { return slices.Contains(users, u) }
	creates, deletes := map[string]int{}, map[string]int{}
	writers := map[string][]string{} // QWorker → authors in order
	perUser := map[string]int{}
	for _, w := range writes {
		if !ours(w.User) {
			continue
		}
		perUser[w.User[strings.LastIndex(w.User, ":")+1:]]++
		switch {
		case w.Resource == "pods" && w.Operation == "CREATE":
			creates[w.QWorker]++
		case w.Resource == "pods" && w.Operation == "DELETE":
			deletes[w.QWorker]++
		case strings.HasPrefix(w.Resource, "qworkers"):
			if a := writers[w.Name]; len(a) == 0 || a[len(a)-1] != w.User {
				writers[w.Name] = append(a, w.User)
			}
		}
	}
	for qw, c := range creates {
		if !busy[qw] {
			t.Errorf("idle QWorker %s got %d pods", qw, c)
		}
	}
	for qw := range busy {
		if creates[qw] != wantPods || deletes[qw] != 0 {
			t.Errorf("%s: %d pod creates and %d deletes, want %d and 0", qw, creates[qw], deletes[qw], wantPods)
		}
	}
	moved := 0
	for qw, turns := range writers {
		seen := map[string]bool{}
		for _, u := range turns {
			if seen[u] {
				t.Errorf("%s written by its replicas in interleaved turns: %v", qw, turns)
				break
			}
			seen[u] = true
		}
		if len(turns) > 1 {
			moved++
		}
	}
	t.Logf("writes by replica: %v; %d QWorkers written by more than one replica (in turns, after a hand-over)", perUser, moved)
}
