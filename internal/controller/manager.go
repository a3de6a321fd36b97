// Package controller assembles Swell's in-cluster controller: one
// controller-runtime manager that runs one reconciler per kind (each in its
// own package below this one), with health probes, Prometheus metrics,
// leader election and graceful shutdown.
package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/swell-autoscaler/swell/internal/bindaddr"
	"github.com/swell-autoscaler/swell/internal/controller/leaderguard"
	"github.com/swell-autoscaler/swell/internal/controller/metricsauth"
	"github.com/swell-autoscaler/swell/internal/controller/qworker"
	"github.com/swell-autoscaler/swell/pkg/egress"
)

// The RBAC the secure metrics filter needs: it asks the apiserver who a
// scraper's bearer token belongs to (TokenReview) and whether that identity
// may get /metrics (SubjectAccessReview).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// leaderElectionID names the Lease replicas of the controller compete for.
const leaderElectionID = "swell-controller.swell.dev"

// Leader election timing defaults. They are longer than
// controller-runtime's 15 s / 10 s / 2 s so that an API server outage (a
// control-plane upgrade, an apiserver restart) of up to 30 s costs the
// leader no refused write and up to 35 s does not cost it the lease: a
// renewal is due every RetryPeriod and the last one may be RenewDeadline
// old. The price is failover after a leader dies without releasing the
// lease (node lost): up to LeaseDuration. A leader that stops cleanly
// releases the lease and a standby takes over at once.
const (
	DefaultLeaseDuration = 60 * time.Second
	DefaultRenewDeadline = 40 * time.Second
	DefaultRetryPeriod   = 5 * time.Second
)

// errLeaderElectionLost is what controller-runtime's manager returns from
// Start when its elector could not renew the lease within the renew
// deadline (and only then).
const errLeaderElectionLost = "leader election lost"

// Options configures the manager; the flags of `swell controller` fill it.
type Options struct {
	// MetricsAddr serves /metrics ("0" disables it). On a loopback
	// address it serves anyone on the host; on any other address every
	// request must carry a bearer token the apiserver authenticates
	// (TokenReview) and authorizes for get on the /metrics non-resource
	// URL (SubjectAccessReview).
	MetricsAddr string
	// MetricsSecure serves metrics over HTTPS (a self-signed certificate
	// unless MetricsCertDir holds tls.crt and tls.key); plain HTTP when false.
	MetricsSecure bool
	// MetricsCertDir holds the metrics server's tls.crt and tls.key.
	MetricsCertDir string
	// ProbeAddr serves /healthz and /readyz.
	ProbeAddr string
	// PprofAddr serves Go's /debug/pprof profiles; "" or "0" disables it
	// (the default: profiles reveal memory contents to whoever can reach
	// them, so bind it to loopback and port-forward).
	PprofAddr string
	// LeaderElect makes replicas of the controller elect one active leader.
	LeaderElect bool
	// LeaderElectionNamespace holds the lease; defaults to the pod's namespace.
	LeaderElectionNamespace string
	// LeaseDuration, RenewDeadline and RetryPeriod time the election
	// (client-go's meanings); zero takes the Default* values. A leader
	// whose last renewal is older than RenewDeadline writes nothing.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// Namespaces restricts watches; empty watches every namespace.
	Namespaces []string
	// GracefulShutdown bounds how long reconcilers get to finish on SIGTERM.
	GracefulShutdown time.Duration
	// DisableNodePools leaves the NodePoolScaler reconciler out, so an
	// install without node pools needs no permission on nodes.
	DisableNodePools bool
	// NodePoolsOnly runs the NodePoolScaler reconciler alone: the
	// leader-elected controller beside a shard ring, which serves every
	// other kind.
	NodePoolsOnly bool
	// Egress is the operator's policy for outbound calls users configure
	// (PodAutoscaler http methods, ScalerConfig brokers): Allow and Deny of
	// pkg/egress. Broker connections may also reach the private ranges,
	// where in-cluster brokers live, unless EgressBrokerStrict. The API
	// server of the manager's config is always refused unless allowed
	// exactly. There is no way to turn the policy off, only to allow.
	Egress egress.Config
	// EgressBrokerStrict refuses the private ranges to ScalerConfig brokers
	// too, as for http methods, so only Egress.Allow opens them: for
	// clusters where a tenant's ScalerConfig must not reach other tenants'
	// in-cluster services. Off (the zero value) keeps them open, because
	// brokers usually live in the cluster at private addresses.
	EgressBrokerStrict bool
	// RequireSecretAddresses refuses, as ScalerConfig broker credentials,
	// Secrets without the swell.dev/allowed-addresses annotation (see
	// brokersource.AllowedAddressesAnnotation): for clusters where whoever
	// may write ScalerConfigs in a namespace may not read all of its
	// Secrets. Off (the zero value) keeps existing Secrets working; an
	// annotated Secret is bound to its addresses either way.
	RequireSecretAddresses bool
	// PodAutoscalerFullResource sends PodAutoscaler methods whole targets
	// and pods instead of a view (identity, replicas, selector, status).
	PodAutoscalerFullResource bool
	// ShardRing, when set, makes this replica a member of the named shard
	// ring (package shard): every replica is active and serves its share
	// of the QWorkers, PodAutoscalers and ScalerConfigs. The ring's Leases
	// live in LeaderElectionNamespace and are timed by LeaseDuration,
	// RenewDeadline and RetryPeriod. Excludes LeaderElect; requires
	// DisableNodePools.
	ShardRing string
	// ShardIdentity names this replica in the ring; default the host name
	// (the pod's name), which must be unique among the ring's replicas.
	ShardIdentity string
}

// Setup registers a reconciler with the manager. Each kind's package
// provides one; NewManager calls them in order.
type Setup func(ctx context.Context, mgr ctrl.Manager) error

// NewScheme returns the scheme with Kubernetes' built-in types plus the
// given API groups.
func NewScheme(addToScheme ...func(*runtime.Scheme) error) (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	for _, add := range addToScheme {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("register API types: %w", err)
		}
	}
	return s, nil
}

// NewManager builds the manager and registers every reconciler.
//
// With leader election on, the manager's clients write through a
// leaderguard.Guard: the elector's lock records each renewal, and every
// write to the API (and each node-pool resize, through the context given
// to the setups) is refused once the last renewal is older than the renew
// deadline, so a leader resuming from a pause acts on nothing before it
// learns it lost the lease.
//
// A leader that loses its lease (it could not renew within the renew
// deadline: an API server outage, a pause) does not exit. controller-runtime
// ends a manager whose lease is lost and cannot restart it, so the returned
// manager's Start builds a new one (a new cache, the same setups, the same
// lease identity) and campaigns again in the same process. With the same
// identity the elector takes back a lease that nobody else took as soon as
// the API server answers, instead of a new process waiting a whole lease
// duration for its predecessor's lease to expire.
func NewManager(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, o Options, setups ...Setup) (ctrl.Manager, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	// Nothing reads managed fields, often the largest part of an object;
	// pods keep only what the QWorker controller reads (qworker.TrimPod).
	cacheOpts := cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject:         map[client.Object]cache.ByObject{&corev1.Pod{}: {Transform: qworker.TrimPod}},
	}
	if len(o.Namespaces) > 0 {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range o.Namespaces {
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	grace := o.GracefulShutdown
	lease, renew, retry := o.LeaseDuration, o.RenewDeadline, o.RetryPeriod
	mgrOpts := ctrl.Options{
		Scheme:                        scheme,
		Cache:                         cacheOpts,
		Metrics:                       metricsOptions(o),
		HealthProbeBindAddress:        o.ProbeAddr,
		PprofBindAddress:              o.PprofAddr,
		LeaderElection:                o.LeaderElect,
		LeaderElectionID:              leaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &lease,
		RenewDeadline:                 &renew,
		RetryPeriod:                   &retry,
		GracefulShutdownTimeout:       &grace,
	}
	if o.LeaderElect {
		guard, err := leaderguard.New(leaderguard.Options{
			MaxAge: o.RenewDeadline, Logger: ctrl.Log.WithName("leaderguard"), Registerer: crmetrics.Registry,
		})
		if err != nil {
			return nil, err
		}
		lock, err := newLeaseLock(cfg, o)
		if err != nil {
			return nil, err
		}
		mgrOpts.LeaderElectionResourceLockInterface = guard.Lock(lock)
		// Each term registers the same controllers again.
		mgrOpts.Controller.SkipNameValidation = ptr.To(true)
		cfg = rest.CopyConfig(cfg)
		cfg.Wrap(guard.WrapTransport)
		c := &campaigner{guard: guard, log: ctrl.Log.WithName("leaderelection"), retry: termRetry,
			build: func(ctx context.Context) (ctrl.Manager, error) {
				mgr, err := ctrl.NewManager(cfg, mgrOpts)
				if err != nil {
					return nil, fmt.Errorf("create manager: %w", err)
				}
				return setUp(leaderguard.Into(ctx, guard), mgr, setups)
			}}
		if err := c.newTerm(ctx); err != nil {
			return nil, err
		}
		return c, nil
	}
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	return setUp(ctx, mgr, setups)
}

// campaigner is the manager of a leader-elected controller: one
// controller-runtime manager per term, a new term after each lost lease.
// Its other methods reach the current term's manager: whatever is added to
// a term's manager other than through the setups (Swell adds everything
// through them) does not carry over to later terms.
type campaigner struct {
	ctrl.Manager // the current term's
	guard        *leaderguard.Guard
	log          logr.Logger
	build        func(ctx context.Context) (ctrl.Manager, error)
	retry        time.Duration      // between attempts to build the next term
	endTerm      context.CancelFunc // stops what the term's setups started
}

// newTerm builds the next term's manager with setups bound to a context
// that ends with the term.
func (c *campaigner) newTerm(ctx context.Context) error {
	tctx, cancel := context.WithCancel(ctx)
	mgr, err := c.build(tctx)
	if err != nil {
		cancel()
		return err
	}
	c.Manager, c.endTerm = mgr, cancel
	return nil
}

// Start runs terms until ctx ends or a term fails for another reason than
// a lost lease. The guard is in every term's context, so every reconcile
// pass can reach it through leaderguard.Check.
func (c *campaigner) Start(ctx context.Context) error {
	for {
		err := c.Manager.Start(leaderguard.Into(ctx, c.guard))
		c.endTerm()
		if ctx.Err() != nil || err == nil || err.Error() != errLeaderElectionLost {
			return err
		}
		c.log.Info(errLeaderElectionLost + "; campaigning again in this process (writes stay refused until the lease is renewed)")
		if !c.retryNewTerm(ctx) {
			return nil
		}
	}
}

// retryNewTerm builds the next term once the last term's probe listener
// has closed (its Start returns before its servers stop), retrying every
// c.retry until it succeeds or ctx ends: the setups read the API's
// discovery, which fails for as long as the outage that cost the lease.
// It reports false when ctx ended first.
func (c *campaigner) retryNewTerm(ctx context.Context) bool {
	var logged time.Time
	for {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(c.retry):
		}
		err := c.newTerm(ctx)
		if err == nil {
			return true
		}
		if time.Since(logged) >= 10*time.Second {
			c.log.Info("building the next term's manager failed; retrying", "every", c.retry, "err", err.Error())
			logged = time.Now()
		}
	}
}

// termRetry is how often a new term is tried after a lost lease; the first
// try waits as long, for the last term's listeners to close.
const termRetry = time.Second

// setUp adds the probes and every reconciler to mgr.
func setUp(ctx context.Context, mgr ctrl.Manager, setups []Setup) (ctrl.Manager, error) {
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add healthz: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add readyz: %w", err)
	}
	for _, setup := range setups {
		if err := setup(ctx, mgr); err != nil {
			return nil, err
		}
	}
	return mgr, nil
}

// withDefaults fills unset election timings.
func (o Options) withDefaults() Options {
	if o.LeaseDuration == 0 {
		o.LeaseDuration = DefaultLeaseDuration
	}
	if o.RenewDeadline == 0 {
		o.RenewDeadline = DefaultRenewDeadline
	}
	if o.RetryPeriod == 0 {
		o.RetryPeriod = DefaultRetryPeriod
	}
	return o
}

// validate checks the election timings as client-go will, but at start and
// naming the flags.
func (o Options) validate() error {
	if !o.LeaderElect {
		return nil
	}
	if o.LeaseDuration <= o.RenewDeadline {
		return fmt.Errorf("--leader-elect-lease-duration %s must be longer than --leader-elect-renew-deadline %s", o.LeaseDuration, o.RenewDeadline)
	}
	if floor := time.Duration(leaderelection.JitterFactor * float64(o.RetryPeriod)); o.RenewDeadline <= floor {
		return fmt.Errorf("--leader-elect-renew-deadline %s must be longer than %.1f × --leader-elect-retry-period %s", o.RenewDeadline, leaderelection.JitterFactor, o.RetryPeriod)
	}
	return nil
}

// metricsOptions puts the authn/authz filter in front of /metrics whenever
// the address is reachable from other hosts.
func metricsOptions(o Options) metricsserver.Options {
	m := metricsserver.Options{
		BindAddress: o.MetricsAddr, SecureServing: o.MetricsSecure, CertDir: o.MetricsCertDir,
		// HTTP/1.1 only, as kubebuilder's scaffold: HTTP/2's stream resets
		// (CVE-2023-44487) are not worth it for a scrape endpoint.
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	}
	if !bindaddr.Disabled(o.MetricsAddr) && !bindaddr.IsLoopback(o.MetricsAddr) {
		m.FilterProvider = metricsauth.FilterProvider
	}
	return m
}

// electionNamespace is where the leader and shard leases live: the flag,
// else the pod's namespace.
func electionNamespace(o Options) (string, error) {
	if o.LeaderElectionNamespace != "" {
		return o.LeaderElectionNamespace, nil
	}
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return "", errors.New("leader election and sharding: no --leader-election-namespace, no $POD_NAMESPACE and not in a pod")
	}
	return strings.TrimSpace(string(b)), nil
}

// newLeaseLock builds the Lease lock on cfg as given (never the guarded
// config: renewals must go out while writes are refused), with an identity
// of host name and a random suffix, as controller-runtime does.
func newLeaseLock(cfg *rest.Config, o Options) (resourcelock.Interface, error) {
	ns, err := electionNamespace(o)
	if err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("leader election identity: %w", err)
	}
	lcfg := rest.AddUserAgent(rest.CopyConfig(cfg), "leader-election")
	// One hung request must not use up the whole renew deadline, nor hold
	// the first renewal after an outage long after it ended.
	lcfg.Timeout = max(min(o.RenewDeadline/2, 2*o.RetryPeriod), time.Second)
	core, err := corev1client.NewForConfig(lcfg)
	if err != nil {
		return nil, fmt.Errorf("leader election client: %w", err)
	}
	coord, err := coordinationv1client.NewForConfig(lcfg)
	if err != nil {
		return nil, fmt.Errorf("leader election client: %w", err)
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, ns, leaderElectionID, core, coord,
		resourcelock.ResourceLockConfig{Identity: host + "_" + string(uuid.NewUUID())})
	if err != nil {
		return nil, fmt.Errorf("leader election lock: %w", err)
	}
	return lock, nil
}
