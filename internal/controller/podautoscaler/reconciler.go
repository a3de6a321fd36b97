package podautoscaler

import (
	"context"
	"fmt"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/brokersource"
	"github.com/swell-autoscaler/swell/internal/controller/pushwake"
	"github.com/swell-autoscaler/swell/pkg/cpa"
	"github.com/swell-autoscaler/swell/pkg/source"
)

// ConditionReady is True while passes succeed; False names the failed
// stage (cpa's event reasons) or InvalidSpec.
const ConditionReady = "Ready"

// Event reasons recorded on the PodAutoscaler besides cpa's failure ones.
const (
	ReasonInvalidSpec = "InvalidSpec"
	ReasonSucceeded   = "Succeeded"
	ReasonDisabled    = cpa.ReasonAutoscalingDisabledByZero
)

// Reconciler runs one CPA pass per reconcile of a PodAutoscaler and asks to
// be called again after intervalSeconds; a queue source that can push also
// wakes it early while the target is idle at zero (see idleAfter). Its
// RBAC: PodAutoscalers read and status written; the scale subresource of
// Deployments, StatefulSets, ReplicaSets and QWorkers read and written, and
// the full target read for those kinds (it is the `resource` the methods
// receive). Any other kind's scale subresource needs a grant the operator
// chooses (config/rbac/any-scale-target, or the chart's
// podAutoscalers.scaleTargets), since scaleTargetRef may name any kind with
// one; without `get` on such a kind the methods receive its scale
// subresource. Pods listed (per-pod mode); the metrics APIs read
// (kubernetesMetricSpecs); ScalerConfigs read (metric sources; their
// Secrets through config/rbac/secrets); events written.
//
// +kubebuilder:rbac:groups=swell.dev,resources=podautoscalers,verbs=get;list;watch
// +kubebuilder:rbac:groups=swell.dev,resources=podautoscalers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=apps,resources=deployments/scale;statefulsets/scale;replicasets/scale,verbs=get;update;patch
// +kubebuilder:rbac:groups=quickube.com,resources=qworkers/scale,verbs=get;update;patch
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;replicasets,verbs=get
// +kubebuilder:rbac:groups=quickube.com,resources=qworkers,verbs=get
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list
// +kubebuilder:rbac:groups=quickube.com,resources=scalerconfigs,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=metrics.k8s.io,resources=pods,verbs=get;list
// +kubebuilder:rbac:groups=custom.metrics.k8s.io,resources=*,verbs=get;list
// +kubebuilder:rbac:groups=external.metrics.k8s.io,resources=*,verbs=get;list
type Reconciler struct {
	Client   client.Client
	Recorder record.EventRecorder
	Clock    clock.PassiveClock
	// Clients read and scale targets; shared by every PodAutoscaler.
	Clients cpa.ClusterClients
	// Runner calls the http methods: an httpRunner under the operator's
	// egress policy in production.
	Runner cpa.MethodRunner
	// FullResource sends methods whole targets and pods instead of the
	// view (see view.go); the operator's opt-in.
	FullResource bool
	// KubeMetrics gathers kubernetesMetricSpecs; nil skips them.
	KubeMetrics *cpa.KubeMetrics
	// Sources measures spec.metric.source queues; nil fails such passes.
	Sources SourceProvider

	mu     sync.Mutex
	states map[types.NamespacedName]*objState
	// push holds the push subscriptions of queue sources that can push;
	// its gate (wakeAllowed) turns a wake-up into a pass only while the
	// target is idle at zero. Nil (unit tests) means polling only.
	push *pushwake.Watchers[*swellv1.PodAutoscaler]
}

// Reconcile decodes the spec once, runs the pass, records events and
// writes the status once.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var pa swellv1.PodAutoscaler
	if err := r.Client.Get(ctx, req.NamespacedName, &pa); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("get PodAutoscaler: %w", err)
	}
	spec, err := decodeSpec(&pa)
	if err != nil {
		r.push.Stop(req.NamespacedName) // nothing runs until the spec changes
		return r.reportInvalid(ctx, &pa, err)
	}
	st := r.state(req.NamespacedName, spec)
	res := r.pass(ctx, spec, st)
	st.idle.Store(idleAfter(res))
	r.follow(req.NamespacedName, &pa, spec, res.Source)
	r.record(ctx, &pa, res)
	if err := r.writeStatus(ctx, &pa, buildStatus(&pa, res)); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: spec.Interval}, nil
}

// state returns the object's windows, new on first use or a new generation.
func (r *Reconciler) state(key types.NamespacedName, spec paSpec) *objState {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.states == nil {
		r.states = map[types.NamespacedName]*objState{}
	}
	st := r.states[key]
	if st == nil || st.generation != spec.Generation {
		st = newObjState(spec)
		r.states[key] = st
	}
	return st
}

// Release drops what this replica keeps of a PodAutoscaler another
// replica now serves (shard.Releaser).
func (r *Reconciler) Release(key types.NamespacedName) { r.forget(key) }

func (r *Reconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	delete(r.states, key)
	r.mu.Unlock()
	r.push.Stop(key)
}

// follow starts, restarts or stops the object's push subscription as
// subscriptionAfter decides.
func (r *Reconciler) follow(key types.NamespacedName, pa *swellv1.PodAutoscaler, spec paSpec, measured source.Source) {
	switch subscriptionAfter(spec, measured) {
	case ensureSubscription:
		r.push.Ensure(key, pa, measured)
	case stopSubscription:
		r.push.Stop(key)
	case keepSubscription: // the next pass that obtains the source decides
	}
}

func (r *Reconciler) log(ctx context.Context) logr.Logger { return log.FromContext(ctx) }

// record emits a Normal event for a rescale and a Warning for a failure,
// on the PodAutoscaler, so `kubectl describe pas` explains the count.
func (r *Reconciler) record(ctx context.Context, pa *swellv1.PodAutoscaler, res *result) {
	switch {
	case res.Err != nil:
		r.log(ctx).Info("pass failed; replicas held", "reason", res.FailReason, "err", res.Err.Error())
		r.Recorder.Eventf(pa, corev1.EventTypeWarning, res.FailReason, "%s; replicas held", truncate(brokersource.Describe(res.Err), 900))
	case res.Scaled:
		r.Recorder.Eventf(pa, corev1.EventTypeNormal, cpa.ReasonSuccessfulRescale, "New size: %d (was %d); evaluation wanted %d: %s",
			res.Desired, res.Current, res.Evaluation, res.Reason)
	}
}

// buildStatus is the status after a pass. A failed pass keeps the last
// decision and desired count: they still describe the workload.
func buildStatus(pa *swellv1.PodAutoscaler, res *result) swellv1.PodAutoscalerStatus {
	s := *pa.Status.DeepCopy()
	s.ObservedGeneration = pa.Generation
	if res.HaveTarget {
		s.CurrentReplicas = res.Current
	}
	cond := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonSucceeded, ObservedGeneration: pa.Generation}
	switch {
	case res.Err != nil:
		// A broker's quoted reply is reduced to its kind, as on QWorkers:
		// the author reads conditions and events, the log has it all.
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, res.FailReason, truncate(brokersource.Describe(res.Err), 1000)
	case res.Disabled:
		cond.Reason, cond.Message = ReasonDisabled, res.Reason
	default:
		if res.Scaled {
			s.CurrentReplicas = res.Desired
		}
		s.DesiredReplicas = res.Desired
		s.LastDecision = &swellv1.PodAutoscalerDecision{
			Time: metav1.NewTime(res.Now), Inputs: res.Inputs, Evaluation: res.Evaluation, Desired: res.Desired, Reason: res.Reason,
		}
		cond.Message = fmt.Sprintf("last pass: %d → %d (%s)", res.Current, res.Desired, res.Reason)
	}
	meta.SetStatusCondition(&s.Conditions, cond)
	return s
}

// writeStatus patches the status once per reconcile.
func (r *Reconciler) writeStatus(ctx context.Context, pa *swellv1.PodAutoscaler, status swellv1.PodAutoscalerStatus) error {
	updated := pa.DeepCopy()
	updated.Status = status
	if err := r.Client.Status().Patch(ctx, updated, client.MergeFrom(pa)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("write PodAutoscaler status: %w", err)
	}
	return nil
}

// reportInvalid records a spec the API accepted but Swell cannot run (what
// CEL cannot check); nothing is scaled and nothing is requeued until the
// spec changes.
func (r *Reconciler) reportInvalid(ctx context.Context, pa *swellv1.PodAutoscaler, err error) (ctrl.Result, error) {
	r.Recorder.Eventf(pa, corev1.EventTypeWarning, ReasonInvalidSpec, "%v", err)
	status := *pa.Status.DeepCopy()
	status.ObservedGeneration = pa.Generation
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type: ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonInvalidSpec, Message: truncate(err.Error(), 1000), ObservedGeneration: pa.Generation,
	})
	return ctrl.Result{}, r.writeStatus(ctx, pa, status)
}
