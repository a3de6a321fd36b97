package podautoscaler

import (
	"context"
	"fmt"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/controller/pushwake"
	"github.com/swell-autoscaler/swell/internal/controller/shard"
	"github.com/swell-autoscaler/swell/pkg/cpa"
	"github.com/swell-autoscaler/swell/pkg/egress"
)

// CPA's defaults for the readiness rules of kubernetesMetricSpecs; the
// PodAutoscaler API does not expose them yet.
const (
	cpuInitializationPeriod = 300 * time.Second
	initialReadinessDelay   = 30 * time.Second
)

// Options configure the PodAutoscaler controller; zero values are fine.
type Options struct {
	// Runner calls methods; when nil, the controller's http runner dialling
	// under Egress.
	Runner cpa.MethodRunner
	// Egress is the operator's policy for the http methods' destinations;
	// nil allows every destination (callers that assemble the controller,
	// internal/controller.New, always pass one).
	Egress *egress.Policy
	// FullResource sends methods whole targets and pods (see view.go).
	FullResource bool
	// Sources measures spec.metric.source queues: the controller's shared
	// brokersource.Sources. Without it such PodAutoscalers fail every pass.
	Sources SourceProvider
	// Clock defaults to the real clock.
	Clock clock.PassiveClock
	// MaxConcurrentReconciles defaults to 4, so one slow method cannot
	// stall every other PodAutoscaler.
	MaxConcurrentReconciles int
	// Shard, when set, makes this replica serve only the PodAutoscalers
	// the ring assigns it (see package shard); nil serves them all.
	Shard shard.Membership
}

// Setup registers the PodAutoscaler reconciler with mgr. Only generation
// changes and the push wake-ups of an idle target's queue source (see
// idleAfter) trigger a reconcile besides the interval requeue: the status
// write of each pass must not start the next pass early. ctx bounds the
// push subscriptions.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) error {
	clients, err := cpa.NewClusterClients(mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("podautoscaler controller: %w", err)
	}
	api, err := cpa.NewMetricsAPI(mgr.GetConfig(), clients.Discovery, clients.Mapper)
	if err != nil {
		return fmt.Errorf("podautoscaler controller: %w", err)
	}
	if o.Runner == nil {
		o.Runner = newHTTPRunner(o.Egress)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.MaxConcurrentReconciles <= 0 {
		o.MaxConcurrentReconciles = 4
	}
	r := &Reconciler{
		Client:       mgr.GetClient(),
		Recorder:     mgr.GetEventRecorderFor("swell-podautoscaler"), //nolint:staticcheck // the events/v1 recorder is not yet what kubectl describe shows by default
		Clock:        o.Clock,
		Clients:      clients,
		Runner:       o.Runner,
		FullResource: o.FullResource,
		Sources:      o.Sources,
		KubeMetrics:  &cpa.KubeMetrics{API: api, CPUInitializationPeriod: cpuInitializationPeriod, InitialReadinessDelay: initialReadinessDelay},
	}
	r.push = pushwake.New[*swellv1.PodAutoscaler](ctx, pushwake.Options{Kind: "podautoscaler", Gate: r.wakeAllowed})
	b := ctrl.NewControllerManagedBy(mgr).
		Named("podautoscaler").
		For(&swellv1.PodAutoscaler{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, shard.OwnerChanged()))).
		WatchesRawSource(r.push.Source()).
		WithOptions(controller.Options{MaxConcurrentReconciles: o.MaxConcurrentReconciles})
	return shard.Complete(b, mgr, o.Shard, r,
		func() client.Object { return &swellv1.PodAutoscaler{} }, func() client.ObjectList { return &swellv1.PodAutoscalerList{} })
}
