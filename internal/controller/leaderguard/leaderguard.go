// Package leaderguard keeps a paused leader from acting. A leader that was
// stopped (SIGSTOP, a long GC pause, a frozen VM) resumes with reconcilers
// mid-pass and a cache from before the pause, while another replica has
// already taken the lease and acted. client-go's elector notices the lost
// lease only on its next renewal attempt, and the manager's graceful
// shutdown lets reconcilers run on after that.
//
// The guard closes that window from the writer's side: it records when this
// process last renewed its lease (by wrapping the resource lock the elector
// uses) and refuses every write once that renewal is older than a bound
// shorter than the lease duration. Writes to the Kubernetes API are refused
// in the client's transport, so every client built from the manager's
// rest.Config is covered without a call at each write site; actuation that
// does not go through the API (a cloud provider's node-pool resize) calls
// Check with a context carrying the guard.
package leaderguard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/clock"
)

// ErrStale is returned (wrapped) for an action refused because this
// process's lease renewal is too old to be sure it is still the leader.
var ErrStale = errors.New("leader lease not renewed recently: this replica may no longer be the leader")

// Guard tracks the last successful lease renewal of this process.
// A nil *Guard allows everything: leader election is off.
type Guard struct {
	clock   clock.PassiveClock
	maxAge  time.Duration
	log     logr.Logger
	refused prometheus.Counter

	mu      sync.Mutex
	renewed time.Time // zero until the first acquisition
}

// Options configure a Guard.
type Options struct {
	// MaxAge is how old the last renewal may be before actions are refused.
	// Use the elector's renew deadline: a leader that could not renew for
	// that long gives the lease up anyway, and it is shorter than the
	// lease duration other replicas wait before taking over.
	MaxAge time.Duration
	// Clock is injected for tests; nil uses the real clock.
	Clock clock.PassiveClock
	// Logger logs each refused action.
	Logger logr.Logger
	// Registerer, when set, gets swell_leader_guard_refused_total.
	Registerer prometheus.Registerer
}

// New returns a guard that refuses actions until the first renewal.
func New(o Options) (*Guard, error) {
	if o.MaxAge <= 0 {
		return nil, fmt.Errorf("leader guard: max age %s: must be > 0", o.MaxAge)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	g := &Guard{
		clock:  o.Clock,
		maxAge: o.MaxAge,
		log:    o.Logger,
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "swell_leader_guard_refused_total",
			Help: "Writes and actuations refused because this replica's leader lease was not renewed within the renew deadline (a paused or partitioned leader).",
		}),
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(g.refused); err != nil {
			return nil, fmt.Errorf("leader guard: register metric: %w", err)
		}
	}
	return g, nil
}

// Renewed records a successful renewal whose request started at t.
// Counting from the request's start is conservative: other replicas see
// the new record no earlier than that.
func (g *Guard) Renewed(t time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t.After(g.renewed) {
		g.renewed = t
	}
}

// Check returns nil while the last renewal is younger than the bound, else
// an error wrapping ErrStale that says how old it is. A nil guard allows.
func (g *Guard) Check() error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	renewed := g.renewed
	g.mu.Unlock()
	if renewed.IsZero() {
		return fmt.Errorf("%w (lease not acquired yet)", ErrStale)
	}
	if age := g.age(renewed); age >= g.maxAge {
		return fmt.Errorf("%w (last renewal %s ago, bound %s)", ErrStale, age.Round(time.Millisecond), g.maxAge)
	}
	return nil
}

// age is the time since renewed on both the monotonic and the wall clock,
// whichever is larger: the monotonic clock stops while a VM is suspended,
// the wall clock may be stepped; the lease's other holders count real time.
func (g *Guard) age(renewed time.Time) time.Duration {
	now := g.clock.Now()
	mono := now.Sub(renewed)
	wall := now.Round(0).Sub(renewed.Round(0))
	return max(mono, wall)
}

// refuse counts and logs a refused action and returns its error.
func (g *Guard) refuse(what string, err error) error {
	g.refused.Inc()
	g.log.Info("refused while the leader lease is stale", "action", what, "reason", err.Error())
	return fmt.Errorf("%s: %w", what, err)
}

// Allow checks the guard for an action described by what, counting and
// logging a refusal. A nil guard allows.
func (g *Guard) Allow(what string) error {
	if err := g.Check(); err != nil {
		return g.refuse(what, err)
	}
	return nil
}

type ctxKey struct{}

// Into returns ctx carrying g, for actuation that is not an API request.
func Into(ctx context.Context, g *Guard) context.Context {
	return context.WithValue(ctx, ctxKey{}, g)
}

// Check refuses an action when ctx carries a guard whose lease is stale;
// without a guard in ctx (leader election off) it allows.
func Check(ctx context.Context, what string) error {
	g, _ := ctx.Value(ctxKey{}).(*Guard)
	return g.Allow(what)
}

// Lock wraps the elector's resource lock so that every successful Create
// or Update that names this process as holder counts as a renewal.
func (g *Guard) Lock(inner resourcelock.Interface) resourcelock.Interface {
	return &lock{Interface: inner, guard: g}
}

type lock struct {
	resourcelock.Interface
	guard *Guard
}

// Create records an acquisition that created the lease.
func (l *lock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	start := l.guard.clock.Now()
	if err := l.Interface.Create(ctx, ler); err != nil {
		return err
	}
	l.record(ler, start)
	return nil
}

// Update records an acquisition or renewal; an update that hands the
// lease away (release on shutdown) records nothing.
func (l *lock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	start := l.guard.clock.Now()
	if err := l.Interface.Update(ctx, ler); err != nil {
		return err
	}
	l.record(ler, start)
	return nil
}

func (l *lock) record(ler resourcelock.LeaderElectionRecord, start time.Time) {
	if ler.HolderIdentity == l.Identity() {
		l.guard.Renewed(start)
	}
}

// exemptPrefixes are API paths whose POSTs read rather than write: the
// secure metrics filter creates TokenReviews and SubjectAccessReviews on
// every replica, leader or not.
var exemptPrefixes = []string{
	"/apis/authentication.k8s.io/",
	"/apis/authorization.k8s.io/",
}

// WrapTransport returns a RoundTripper that refuses mutating requests
// (POST, PUT, PATCH, DELETE) while the lease is stale; reads pass. Use it
// as rest.Config.Wrap on the manager's config, never on the elector's.
func (g *Guard) WrapTransport(rt http.RoundTripper) http.RoundTripper {
	return roundTripper{next: rt, guard: g}
}

type roundTripper struct {
	next  http.RoundTripper
	guard *Guard
}

// RoundTrip refuses a write before it leaves the process.
func (t roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if mutating(req) {
		if err := t.guard.Allow(req.Method + " " + req.URL.Path); err != nil {
			return nil, err
		}
	}
	return t.next.RoundTrip(req)
}

func mutating(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	for _, p := range exemptPrefixes {
		if strings.HasPrefix(req.URL.Path, p) {
			return false
		}
	}
	return true
}
