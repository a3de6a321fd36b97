package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestLeaderRidesOutAPIServerOutage runs one `swell controller
// --leader-elect` with the default election timings (lease 60 s, renew
// deadline 40 s, retry 5 s) whose every connection to the apiserver goes
// through a loopback proxy the test cuts: open connections are closed and
// new ones refused, as when the apiserver restarts.
//
//   - A 20 s outage (shorter than the renew deadline): the process does not
//     exit, keeps the lease (same holder, no transition, no refused write)
//     and acts on a maxReplicas change made right after the outage.
//   - A 50 s outage (longer than the renew deadline): the elector gives
//     the lease up, the process does not exit but campaigns again and
//     creates the pods for a backlog that grew during the outage. Every
//     write the apiserver sees from it after the outage comes after its
//     lease is renewed. Whether the guard also refuses a write here depends
//     on a create retry landing between the renewal turning 40 s old and
//     the elector giving up, so the count is printed, not required;
//     TestPausedLeaderMakesNoWriteAfterResume requires the guard to refuse.
//
// The times to act are printed; docs/install.md quotes them.
func TestLeaderRidesOutAPIServerOutage(t *testing.T) {
	bin := buildSwell(t)
	// The shared controller in the fixture is kept out of ns by the webhook.
	ctx, c, ns, rdb, queue := redisFixture(t, 4*time.Minute)
	audit := startWriteAudit(ctx, t, ns)
	user := grantControllerRBAC(ctx, t, ns, "outage")[0]

	proxy := startCuttableProxy(t, env.APIServerURL)
	kubeconfig := proxiedKubeconfig(t, impersonatingKubeconfig(t, user), proxy.addr)
	p := startSwell(t, bin, "leader-outage", leaderElectedArgs(kubeconfig, ns)...)
	holder := waitLeaseHolder(ctx, t, ns)
	renewals := watchLeaseRenewals(ctx, t, ns)

	// 10 tasks at factor 1 capped at maxReplicas 2: 2 pods.
	for i := range 10 {
		rdb.LPush(ctx, queue, fmt.Sprintf("t%d", i))
	}
	if err := c.Create(ctx, kwokQWorker(ns, "workers", queue, 0, 2, 1)); err != nil {
		t.Fatalf("create QWorker: %v", err)
	}
	waitForRunningPods(ctx, t, ns, "workers", 2)
	before := getLease(ctx, t, ns)

	// (a) 20 s: shorter than the renew deadline.
	cutAt := time.Now()
	proxy.cutFor(t, 20*time.Second)
	changed := time.Now()
	qw := getQWorker(ctx, t, c, ns, "workers")
	patch := client.MergeFrom(qw.DeepCopy())
	qw.Spec.ScaleConfig.MaxReplicas = 5
	if err := c.Patch(ctx, qw, patch); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "5 pods created after the short outage", func() (bool, error) {
		return audit.count(user, "CREATE", "pods") >= 5, nil
	})
	actA := time.Since(changed)
	renewedA := renewals.firstAfter(ctx, t, changed)
	after := getLease(ctx, t, ns)
	refusedA := strings.Count(p.log(), "refused while the leader lease is stale")
	if n := renewals.countBetween(cutAt.Add(time.Second), changed); n != 0 {
		t.Fatalf("%d lease renewals while the apiserver was unreachable: the proxy did not cut", n)
	}
	t.Logf("20 s outage: created the 3 pods for maxReplicas 2→5 %s after the change; lease renewed %s after the outage; holder %s, transitions %d→%d, writes refused by the guard %d, exited %v",
		actA.Round(100*time.Millisecond), renewedA.Sub(changed).Round(100*time.Millisecond), *after.Spec.HolderIdentity, ptrVal(before.Spec.LeaseTransitions), ptrVal(after.Spec.LeaseTransitions), refusedA, exited(p))
	if exited(p) {
		t.Fatalf("the controller exited during a 20 s outage: %v\n%s", p.exitErr, p.logTail())
	}
	if *after.Spec.HolderIdentity != holder || ptrVal(after.Spec.LeaseTransitions) != ptrVal(before.Spec.LeaseTransitions) {
		t.Fatalf("the lease changed hands during a 20 s outage: %s → %s", holder, *after.Spec.HolderIdentity)
	}
	if refusedA != 0 || strings.Contains(p.log(), "leader election lost") {
		t.Fatalf("a 20 s outage cost the leader its lease or %d writes\n%s", refusedA, p.logTail())
	}
	waitForRunningPods(ctx, t, ns, "workers", 5)

	// (b) 50 s: longer than the renew deadline. With maxReplicas 20 the
	// pool follows the backlog (10 pods); 5 more tasks arrive during the
	// outage, so the controller, which still reaches Redis, wants 15 pods
	// and tries to create them.
	qw = getQWorker(ctx, t, c, ns, "workers")
	patch = client.MergeFrom(qw.DeepCopy())
	qw.Spec.ScaleConfig.MaxReplicas = 20
	if err := c.Patch(ctx, qw, patch); err != nil {
		t.Fatal(err)
	}
	waitForRunningPods(ctx, t, ns, "workers", 10)
	created := audit.count(user, "CREATE", "pods")
	proxy.cut()
	for i := range 5 {
		rdb.LPush(ctx, queue, fmt.Sprintf("u%d", i))
	}
	time.Sleep(50 * time.Second)
	proxy.restore(t)
	restored := time.Now()
	waitFor(ctx, t, "15 pods created after the long outage", func() (bool, error) {
		return audit.count(user, "CREATE", "pods") >= created+5, nil
	})
	recovery := time.Since(restored)
	renewedAt := renewals.firstAfter(ctx, t, restored)
	log := p.log()
	refusedB := strings.Count(log, "refused while the leader lease is stale")
	t.Logf("50 s outage: created the 5 pods for the backlog added during it %s after the apiserver was back; lease renewed %s after; lost the lease: %v; campaigned again in-process: %v; writes refused by the guard %d; exited %v",
		recovery.Round(100*time.Millisecond), renewedAt.Sub(restored).Round(100*time.Millisecond),
		strings.Contains(log, "leader election lost"), strings.Contains(log, "campaigning again"), refusedB, exited(p))
	if exited(p) {
		t.Fatalf("the controller exited after a 50 s outage: %v\n%s", p.exitErr, p.logTail())
	}
	if !strings.Contains(log, "leader election lost") || !strings.Contains(log, "campaigning again") {
		t.Fatalf("a 50 s outage did not end the term and start a new one:\n%s", p.logTail())
	}
	for _, w := range audit.since(user, restored) {
		if w.At.Before(renewedAt) {
			t.Fatalf("a write after the outage before the lease was renewed at %s: %v", renewedAt.Format("15:04:05.000"), w)
		}
	}
	waitForRunningPods(ctx, t, ns, "workers", 15)
}

// cuttableProxy forwards TCP connections on loopback to one address until
// cut, which closes every open connection and the listener (new
// connections are refused); restore listens on the same address again.
type cuttableProxy struct {
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

// startCuttableProxy proxies to the host:port of serverURL.
func startCuttableProxy(t *testing.T, serverURL string) *cuttableProxy {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttableProxy{target: u.Host, conns: map[net.Conn]struct{}{}}
	p.listen(t, "127.0.0.1:0")
	p.addr = p.ln.Addr().String()
	t.Cleanup(p.cut)
	return p
}

func (p *cuttableProxy) listen(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("proxy listen on %s: %v", addr, err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go p.serve(ln)
}

func (p *cuttableProxy) serve(ln net.Listener) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		if !p.track(in, out) {
			return
		}
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

// track records a connection pair unless the proxy was cut meanwhile.
func (p *cuttableProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *cuttableProxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}

// cut closes the listener and every open connection.
func (p *cuttableProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
}

// restore accepts connections on the proxy's address again.
func (p *cuttableProxy) restore(t *testing.T) { p.listen(t, p.addr) }

// cutFor cuts the proxy for d, then restores it.
func (p *cuttableProxy) cutFor(t *testing.T, d time.Duration) {
	p.cut()
	time.Sleep(d)
	p.restore(t)
}

// leaderElectedArgs runs `swell controller --leader-elect` in ns only,
// through kubeconfig, with the lease in ns, no listeners, and the suite's
// loopback Redis allowed (as an operator allows a broker's range); extra
// flags (election timings) follow.
func leaderElectedArgs(kubeconfig, ns string, extra ...string) []string {
	return append([]string{"controller", "--kubeconfig", kubeconfig,
		"--leader-elect", "--leader-election-namespace", ns, "--namespace", ns,
		"--node-pools=false", "--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--graceful-shutdown=30s", "--dev-logs", "--egress-allow=127.0.0.1/32"}, extra...)
}

// proxiedKubeconfig rewrites a kubeconfig's servers to addr (on loopback
// like the apiserver, so its certificate still matches).
func proxiedKubeconfig(t *testing.T, path, addr string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range cfg.Clusters {
		u, err := url.Parse(cl.Server)
		if err != nil {
			t.Fatal(err)
		}
		u.Host = addr
		cl.Server = u.String()
	}
	out := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// leaseName is the Lease `swell controller --leader-elect` holds.
const leaseName = "swell-controller.swell.dev"

func getLease(ctx context.Context, t *testing.T, ns string) *coordinationv1.Lease {
	t.Helper()
	l, err := env.Clientset.CoordinationV1().Leases(ns).Get(ctx, leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitLeaseHolder waits for a holder of the controller's lease in ns.
func waitLeaseHolder(ctx context.Context, t *testing.T, ns string) string {
	t.Helper()
	var holder string
	waitFor(ctx, t, "a leader lease", func() (bool, error) {
		l, err := env.Clientset.CoordinationV1().Leases(ns).Get(ctx, leaseName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
		}
		return holder != "", nil
	})
	return holder
}

// leaseRenewals records, from a watch, every renewTime the controller's
// lease in ns takes.
type leaseRenewals struct {
	mu    sync.Mutex
	times []time.Time
}

func watchLeaseRenewals(ctx context.Context, t *testing.T, ns string) *leaseRenewals {
	t.Helper()
	w, err := env.Clientset.CoordinationV1().Leases(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + leaseName})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	r := &leaseRenewals{}
	go func() {
		for ev := range w.ResultChan() {
			if l, ok := ev.Object.(*coordinationv1.Lease); ok && l.Spec.RenewTime != nil {
				r.mu.Lock()
				r.times = append(r.times, l.Spec.RenewTime.Time)
				r.mu.Unlock()
			}
		}
	}()
	return r
}

// firstAfter waits for the first renewal at or after t (the apiserver's
// clock is this host's).
func (r *leaseRenewals) firstAfter(ctx context.Context, tt *testing.T, t time.Time) time.Time {
	tt.Helper()
	var first time.Time
	waitFor(ctx, tt, "a lease renewal after "+t.Format("15:04:05.000"), func() (bool, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, at := range r.times {
			if !at.Before(t) {
				first = at
				return true, nil
			}
		}
		return false, nil
	})
	return first
}

// countBetween counts renewals in [from, to).
func (r *leaseRenewals) countBetween(from, to time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, at := range r.times {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

func exited(p *swellProcess) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func ptrVal(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}
