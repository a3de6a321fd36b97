package leaderguard

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	clocktesting "k8s.io/utils/clock/testing"
)

func newGuard(t *testing.T, maxAge time.Duration) (*Guard, *clocktesting.FakeClock, prometheus.Gatherer) {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0))
	reg := prometheus.NewRegistry()
	g, err := New(Options{MaxAge: maxAge, Clock: clk, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return g, clk, reg
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		renew   bool
		elapsed time.Duration
		stale   bool
	}{
		{"never acquired", false, 0, true},
		{"just renewed", true, 0, false},
		{"renewed within the bound", true, 9 * time.Second, false},
		{"at the bound", true, 10 * time.Second, true},
		{"after a 20 s pause", true, 20 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, clk, _ := newGuard(t, 10*time.Second)
			if tc.renew {
				g.Renewed(clk.Now())
			}
			clk.Step(tc.elapsed)
			err := g.Check()
			if got := errors.Is(err, ErrStale); got != tc.stale {
				t.Fatalf("Check() = %v, want stale %v", err, tc.stale)
			}
		})
	}
}

func TestNilGuardAllows(t *testing.T) {
	var g *Guard
	if err := g.Check(); err != nil {
		t.Fatalf("nil guard: %v", err)
	}
	if err := Check(context.Background(), "resize"); err != nil {
		t.Fatalf("context without a guard: %v", err)
	}
}

func TestNewRefusesNonPositiveBound(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New with MaxAge 0: want an error")
	}
}

func TestContextCheckCountsRefusals(t *testing.T) {
	g, clk, reg := newGuard(t, 10*time.Second)
	ctx := Into(context.Background(), g)
	g.Renewed(clk.Now())
	if err := Check(ctx, "resize pool"); err != nil {
		t.Fatalf("fresh lease: %v", err)
	}
	clk.Step(15 * time.Second)
	err := Check(ctx, "resize pool")
	if !errors.Is(err, ErrStale) {
		t.Fatalf("stale lease: got %v", err)
	}
	if n, _ := testutil.GatherAndCount(reg, "swell_leader_guard_refused_total"); n != 1 {
		t.Fatalf("series = %d", n)
	}
	if v := testutil.ToFloat64(g.refused); v != 1 {
		t.Fatalf("refused = %v, want 1", v)
	}
}

// fakeLock is a resource lock whose Update/Create outcome the test sets.
type fakeLock struct {
	resourcelock.Interface
	id  string
	err error
	// during runs inside Update/Create, standing for the request's latency.
	during func()
}

func (f *fakeLock) Identity() string { return f.id }
func (f *fakeLock) Create(context.Context, resourcelock.LeaderElectionRecord) error {
	if f.during != nil {
		f.during()
	}
	return f.err
}
func (f *fakeLock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	return f.Create(ctx, ler)
}

func TestLockRecordsOnlyOwnSuccessfulRenewals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		holder  string
		err     error
		create  bool
		renewed bool
	}{
		{"renewal", "me", nil, false, true},
		{"acquisition by create", "me", nil, true, true},
		{"failed renewal", "me", errors.New("conflict"), false, false},
		{"release hands the lease away", "", nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, _, _ := newGuard(t, 10*time.Second)
			inner := &fakeLock{id: "me", err: tc.err}
			l := g.Lock(inner)
			ler := resourcelock.LeaderElectionRecord{HolderIdentity: tc.holder}
			var err error
			if tc.create {
				err = l.Create(context.Background(), ler)
			} else {
				err = l.Update(context.Background(), ler)
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if got := g.Check() == nil; got != tc.renewed {
				t.Fatalf("allowed after the call = %v, want %v", got, tc.renewed)
			}
		})
	}
}

func TestLockCountsFromTheRequestStart(t *testing.T) {
	g, clk, _ := newGuard(t, 10*time.Second)
	// The renewal request takes 4 s: the lease is valid from when it was
	// sent, so 6 s after it returns the guard refuses.
	l := g.Lock(&fakeLock{id: "me", during: func() { clk.Step(4 * time.Second) }})
	if err := l.Update(context.Background(), resourcelock.LeaderElectionRecord{HolderIdentity: "me"}); err != nil {
		t.Fatal(err)
	}
	clk.Step(5 * time.Second)
	if err := g.Check(); err != nil {
		t.Fatalf("9 s after the request started: %v", err)
	}
	clk.Step(time.Second)
	if err := g.Check(); !errors.Is(err, ErrStale) {
		t.Fatalf("10 s after the request started: %v", err)
	}
}

func TestTransportRefusesWritesOnly(t *testing.T) {
	var reached []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = append(reached, r.Method+" "+r.URL.Path)
	}))
	defer srv.Close()
	g, clk, _ := newGuard(t, 10*time.Second)
	hc := &http.Client{Transport: g.WrapTransport(http.DefaultTransport)}
	do := func(method, path string) error {
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		return err
	}
	g.Renewed(clk.Now())
	clk.Step(20 * time.Second) // a paused leader resumes
	for _, tc := range []struct {
		method, path string
		allowed      bool
	}{
		{http.MethodGet, "/api/v1/namespaces/a/pods", true},
		{http.MethodPost, "/api/v1/namespaces/a/pods", false},
		{http.MethodDelete, "/api/v1/namespaces/a/pods/p", false},
		{http.MethodPatch, "/apis/quickube.com/v1alpha1/namespaces/a/qworkers/q/status", false},
		{http.MethodPut, "/apis/apps/v1/namespaces/a/deployments/d/scale", false},
		{http.MethodPost, "/apis/authentication.k8s.io/v1/tokenreviews", true},
		{http.MethodPost, "/apis/authorization.k8s.io/v1/subjectaccessreviews", true},
	} {
		err := do(tc.method, tc.path)
		if got := err == nil; got != tc.allowed {
			t.Errorf("%s %s: err %v, want allowed %v", tc.method, tc.path, err, tc.allowed)
		}
		if err != nil && !errors.Is(err, ErrStale) {
			t.Errorf("%s %s: err %v does not wrap ErrStale", tc.method, tc.path, err)
		}
	}
	want := []string{
		"GET /api/v1/namespaces/a/pods",
		"POST /apis/authentication.k8s.io/v1/tokenreviews",
		"POST /apis/authorization.k8s.io/v1/subjectaccessreviews",
	}
	if len(reached) != len(want) {
		t.Fatalf("server saw %v, want %v", reached, want)
	}
	for i := range want {
		if reached[i] != want[i] {
			t.Fatalf("server saw %v, want %v", reached, want)
		}
	}
	if v := testutil.ToFloat64(g.refused); v != 4 {
		t.Fatalf("refused = %v, want 4", v)
	}
}
