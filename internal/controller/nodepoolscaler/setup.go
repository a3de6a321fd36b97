package nodepoolscaler

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// Options configure the NodePoolScaler controller.
type Options struct {
	// Clock drives cooldowns, expiry and condition times; defaults to the
	// real clock.
	Clock clock.WithTicker
	// DrainValidationDelay overrides nodepool.DefaultDrainValidationDelay.
	DrainValidationDelay time.Duration
}

// Setup registers the NodePoolScaler reconciler with mgr. ctx bounds the
// shared node and pod cache: it stops with the manager.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) error {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("nodepoolscaler controller: clientset: %w", err)
	}
	shared, err := nodepool.NewCache(cs, labels.Everything())
	if err != nil {
		return fmt.Errorf("nodepoolscaler controller: %w", err)
	}
	wake := make(chan event.GenericEvent, 64)
	recorder := mgr.GetEventRecorderFor("swell-nodepoolscaler") //nolint:staticcheck // the events/v1 recorder is not yet what kubectl describe shows by default
	r := &Reconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: recorder, Clock: o.Clock,
		builder: &runnerBuilder{
			baseCtx: ctx, clientset: cs, recorder: recorder, clock: o.Clock, wake: wake, log: mgr.GetLogger().WithName("nodepoolscaler"),
			cache: shared, drainValidation: o.DrainValidationDelay,
		},
		runners: newRunners(),
	}
	// Status writes must not trigger passes: only spec changes (and
	// deletions) do; node and pod changes arrive through wake.
	return ctrl.NewControllerManagedBy(mgr).
		Named("nodepoolscaler").
		For(&swellv1.NodePoolScaler{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(wake, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Complete(r)
}
