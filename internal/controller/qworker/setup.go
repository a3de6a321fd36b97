package qworker

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	crsource "sigs.k8s.io/controller-runtime/pkg/source"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/controller/pushwake"
	"github.com/swell-autoscaler/swell/internal/controller/shard"
	"github.com/swell-autoscaler/swell/pkg/source/stats"
)

// scalerConfigIndex indexes QWorkers by the ScalerConfig they name.
const scalerConfigIndex = ".spec.scaleConfig.scalerConfigRef"

// Options configure the QWorker controller.
type Options struct {
	// Sources measures queues; required.
	Sources SourceProvider
	// Clock defaults to the real clock.
	Clock clock.PassiveClock
	// MaxConcurrentReconciles defaults to 16: a pass mostly waits (for its
	// measurement, up to measureWait, and for API writes), so a few dozen
	// in flight cost little CPU, and one slow broker cannot stall every
	// other QWorker.
	MaxConcurrentReconciles int
	// Metrics are registered by the caller (controller-runtime's registry).
	Metrics *Metrics
	// PodMetrics reads metrics.k8s.io for QWorkers with activateVPA.
	PodMetrics PodMetricsLister
	// Shard, when set, makes this replica serve only the QWorkers the ring
	// assigns it (see package shard); nil serves them all.
	Shard shard.Membership
}

// Setup registers the QWorker reconciler with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) error {
	if o.Sources == nil || o.Metrics == nil {
		return fmt.Errorf("qworker controller: Sources and Metrics are required")
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.MaxConcurrentReconciles <= 0 {
		o.MaxConcurrentReconciles = 16
	}
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &corev1.Pod{}, ownerIndex, podOwnerName); err != nil {
		return fmt.Errorf("index pods by QWorker: %w", err)
	}
	if err := idx.IndexField(ctx, &qv1.QWorker{}, scalerConfigIndex, func(o client.Object) []string {
		return []string{o.(*qv1.QWorker).Spec.ScaleConfig.ScalerConfigRef}
	}); err != nil {
		return fmt.Errorf("index QWorkers by ScalerConfig: %w", err)
	}
	r := &Reconciler{
		Client:      mgr.GetClient(),
		Recorder:    mgr.GetEventRecorderFor("swell-qworker"), //nolint:staticcheck // the events/v1 recorder is not yet what kubectl describe shows by default
		Clock:       o.Clock,
		Sources:     o.Sources,
		Metrics:     o.Metrics,
		PodMetrics:  o.PodMetrics,
		exp:         newExpectations(),
		sched:       newSchedules(),
		status:      newStatusWriter(mgr.GetClient(), o.Clock),
		statusAsync: true,
	}
	// A push wake-up only becomes a pass when the schedule may measure
	// early on it (schedule.go).
	r.push = pushwake.New[*QWorker](ctx, pushwake.Options{Kind: "qworker", Gate: r.sched.gate})
	b := ctrl.NewControllerManagedBy(mgr).
		Named("qworker").
		For(&qv1.QWorker{}, builder.WithPredicates(qworkerChanged())).
		Watches(&corev1.Pod{}, &podHandler{exp: r.exp, settled: r.sched.isSettled}).
		Watches(&qv1.ScalerConfig{}, handler.EnqueueRequestsFromMapFunc(r.qworkersOf)).
		WithOptions(controller.Options{MaxConcurrentReconciles: o.MaxConcurrentReconciles})
	// Settled QWorkers are measured by the poller, not by a reconcile per
	// poll (poller.go).
	if err := mgr.Add(manager.RunnableFunc(r.runPoller)); err != nil {
		return fmt.Errorf("add QWorker poller: %w", err)
	}
	// Statuses are written apart from the passes (statuswriter.go).
	if err := mgr.Add(manager.RunnableFunc(r.status.run)); err != nil {
		return fmt.Errorf("add QWorker status writer: %w", err)
	}
	b = b.WatchesRawSource(r.push.Source())
	b = b.WatchesRawSource(crsource.Channel(r.sched.wakeups, &handler.TypedEnqueueRequestForObject[*QWorker]{}))
	return shard.Complete(b, mgr, o.Shard, r,
		func() client.Object { return &qv1.QWorker{} }, func() client.ObjectList { return &qv1.QWorkerList{} })
}

// statsOnlyUpdate reports whether a pod update changed nothing but the
// worker's stats annotation (the SDKs write it every few seconds while busy).
func statsOnlyUpdate(oldObj, newObj client.Object) bool {
	o, ok := oldObj.(*corev1.Pod)
	n, ok2 := newObj.(*corev1.Pod)
	if !ok || !ok2 || o.Annotations[stats.Annotation] == n.Annotations[stats.Annotation] {
		return false
	}
	o, n = o.DeepCopy(), n.DeepCopy()
	for _, p := range []*corev1.Pod{o, n} {
		delete(p.Annotations, stats.Annotation)
		p.ResourceVersion, p.ManagedFields = "", nil
	}
	return equality.Semantic.DeepEqual(o, n)
}

// podOwnerName is the name of a pod's controlling QWorker, for the index.
func podOwnerName(o client.Object) []string {
	ref := metav1.GetControllerOf(o)
	if ref == nil || ref.Kind != "QWorker" || ref.APIVersion != qv1.GroupVersion.String() {
		return nil
	}
	return []string{ref.Name}
}

// qworkersOf maps a ScalerConfig to the QWorkers that use it.
func (r *Reconciler) qworkersOf(ctx context.Context, o client.Object) []reconcile.Request {
	var list qv1.QWorkerList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{scalerConfigIndex: o.GetName()}); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, qw := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: qw.Namespace, Name: qw.Name}})
	}
	return out
}

// podHandler enqueues a pod's QWorker and settles the expectations: a pod
// seen created or deleted is one fewer change the cache still owes.
type podHandler struct {
	exp *expectations
	// settled reports whether a QWorker is left to the poller (poller.go);
	// nil in tests that do not need it.
	settled func(types.NamespacedName) bool
}

func (h *podHandler) key(o client.Object) (types.NamespacedName, bool) {
	names := podOwnerName(o)
	if len(names) == 0 {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: names[0]}, true
}

func (h *podHandler) Create(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if key, ok := h.key(e.Object); ok {
		h.exp.created(key)
		q.Add(reconcile.Request{NamespacedName: key})
	}
}

func (h *podHandler) Update(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if statsOnlyUpdate(e.ObjectOld, e.ObjectNew) {
		// A worker's periodic stats report changes nothing to act on now;
		// the next pass reads it from the cache. A settled QWorker has no
		// next pass soon (its polls are quiet), yet a new report means its
		// workers serve tasks between polls: pass once so the task
		// metrics follow.
		if key, ok := h.key(e.ObjectNew); ok && h.settled != nil && h.settled(key) {
			q.Add(reconcile.Request{NamespacedName: key})
		}
		return
	}
	key, ok := h.key(e.ObjectNew)
	if !ok {
		// The pod dropped its owner reference (QScaler's exit protocol):
		// its former QWorker must stop counting it.
		key, ok = h.key(e.ObjectOld)
		if !ok {
			h.orphan(e.ObjectNew, q)
			return
		}
		h.exp.observed(key, e.ObjectOld.GetName())
	}
	if e.ObjectNew.GetDeletionTimestamp() != nil || e.ObjectNew.GetAnnotations()[AnnotationRetire] == "true" {
		h.exp.observed(key, e.ObjectNew.GetName())
	}
	q.Add(reconcile.Request{NamespacedName: key})
}

func (h *podHandler) Delete(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	key, ok := h.key(e.Object)
	if !ok {
		h.orphan(e.Object, q)
		return
	}
	h.exp.observed(key, e.Object.GetName())
	q.Add(reconcile.Request{NamespacedName: key})
}

// orphan settles what any QWorker expected of a pod that names no QWorker
// any more (see expectations.observedOrphan) and wakes those QWorkers.
func (h *podHandler) orphan(o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	for _, key := range h.exp.observedOrphan(o.GetNamespace(), o.GetName()) {
		q.Add(reconcile.Request{NamespacedName: key})
	}
}

func (h *podHandler) Generic(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if key, ok := h.key(e.Object); ok {
		q.Add(reconcile.Request{NamespacedName: key})
	}
}

// qworkerChanged lets through the QWorker updates that need a pass: a spec
// change (generation), an annotation change (pause), a deletion starting or
// finalizers changing. The controller's own status writes do not, so a
// written status never measures or writes again.
func qworkerChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld, e.ObjectNew
			if o == nil || n == nil {
				return true
			}
			return o.GetGeneration() != n.GetGeneration() ||
				!equality.Semantic.DeepEqual(o.GetAnnotations(), n.GetAnnotations()) ||
				!equality.Semantic.DeepEqual(o.GetLabels(), n.GetLabels()) ||
				!o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp()) ||
				!equality.Semantic.DeepEqual(o.GetFinalizers(), n.GetFinalizers())
		},
	}
}
