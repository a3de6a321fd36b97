package qworker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/brokersource"
	"github.com/swell-autoscaler/swell/internal/controller/pushwake"
	"github.com/swell-autoscaler/swell/pkg/policy"
	"github.com/swell-autoscaler/swell/pkg/source"
)

// measureTimeout bounds one measurement, the dial of a new connection
// included. It runs apart from the reconcile (schedule.go), which waits for
// it at most measureWait.
const measureTimeout = 5 * time.Second

// SourceProvider hands out the source measuring a queue of a ScalerConfig
// for one QWorker of namespace, its owner (Redis counts the tasks held by
// that QWorker's dead SDK workers). Implementations share one broker
// connection per ScalerConfig.
type SourceProvider interface {
	QWorkerSource(ctx context.Context, namespace, scalerConfig, queue, qworker string) (source.Source, error)
}

// Reconciler reconciles QWorkers. Its RBAC is what controller-gen writes
// into config/rbac/role.yaml: QWorkers and ScalerConfigs read and status
// written, finalizers of QWorkers updated (pods carry an owner reference with
// blockOwnerDeletion, which the OwnerReferencesPermissionEnforcement
// admission plugin checks), pods created, patched (retirement marks) and
// deleted, events written. Secrets (broker credentials) are read through the
// separate swell-controller-secrets role (config/rbac/secrets), which an
// operator binds cluster-wide or per namespace.
//
// +kubebuilder:rbac:groups=quickube.com,resources=qworkers,verbs=get;list;watch
// +kubebuilder:rbac:groups=quickube.com,resources=qworkers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=quickube.com,resources=qworkers/finalizers,verbs=update
// +kubebuilder:rbac:groups=quickube.com,resources=scalerconfigs,verbs=get;list;watch
// +kubebuilder:rbac:groups=quickube.com,resources=scalerconfigs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=metrics.k8s.io,resources=pods,verbs=get;list
type Reconciler struct {
	Client   client.Client
	Recorder record.EventRecorder
	Clock    clock.PassiveClock
	Sources  SourceProvider
	Metrics  *Metrics
	// PodMetrics reads metrics.k8s.io for activateVPA; nil disables it.
	PodMetrics PodMetricsLister

	exp    *expectations
	mu     sync.Mutex
	states map[types.NamespacedName]*workerState
	// push holds the push subscriptions: each wake-up enqueues the QWorker,
	// so a new message is seen in well under the poll interval.
	push *pushwake.Watchers[*QWorker]
	// sched is when each QWorker is measured (schedule.go).
	sched *schedules
	// status writes QWorker statuses in the background (statuswriter.go);
	// statusAsync says its workers run (Setup), else writes are inline.
	status      *statusWriter
	statusAsync bool
	// holds back pod creation after failures (backoff.go).
	holds backoffs
}

// state returns the in-memory state of a QWorker, creating it on first use.
func (r *Reconciler) state(key types.NamespacedName) *workerState {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.states == nil {
		r.states = map[types.NamespacedName]*workerState{}
	}
	st := r.states[key]
	if st == nil {
		st = &workerState{}
		r.states[key] = st
	}
	return st
}

func (r *Reconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	delete(r.states, key)
	r.mu.Unlock()
	r.exp.forget(key)
	r.holds.forget(key)
	r.Metrics.forget(key)
	r.push.Stop(key)
	r.scheds().forget(key)
	r.statuses().forget(key)
}

// Release drops what this replica keeps of a QWorker another replica now
// serves (shard.Releaser): windows, expectations, metrics, subscriptions.
func (r *Reconciler) Release(key types.NamespacedName) { r.forget(key) }

// Reconcile measures, decides, acts and reports, writing the status once.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	qw, err := r.getQWorker(ctx, req.NamespacedName)
	if apierrors.IsNotFound(err) {
		r.forget(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if qw.Annotations[AnnotationPaused] == "true" {
		r.scheds().unsettle(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	if qw.DeletionTimestamp != nil {
		// Being deleted (foreground deletion, Argo CD): the garbage
		// collector removes the pods, and a pod created now would keep it
		// waiting for ever.
		r.forget(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	now := r.Clock.Now()
	spec, specErr := decodeSpec(qw)
	if specErr != nil {
		return r.reportInvalid(ctx, qw, specErr)
	}
	r.applyScalerConfigInterval(ctx, qw, &spec)
	hash, err := workerHash(spec.PodSpec, qw.Spec.PodMetadata)
	if err != nil {
		return r.reportInvalid(ctx, qw, err)
	}
	// Whether the cache had shown every earlier pod change is read before
	// the pods are listed, as the ReplicaSet controller does: read after,
	// a create event arriving in between (while the pass waits for its
	// measurement) would satisfy it, and the pass would plan from a list
	// that misses that pod and create it again.
	synced := r.exp.satisfied(req.NamespacedName, now)
	pods, err := r.ownedPods(ctx, qw)
	if err != nil {
		return ctrl.Result{}, err
	}
	view := observe(pods, now, spec.RetireTimeout)
	st := r.state(req.NamespacedName)
	st.observeWorkers(pods)
	grown, export := st.countTasks()
	r.Metrics.workerTasks(req.NamespacedName, grown, export)
	active := int32(0)
	for _, w := range view.workers {
		if !w.Retiring && !w.Terminating {
			active++
		}
	}
	// Measuring follows its own schedule (schedule.go); a pass without a
	// new measurement acts on the last decision.
	d, decided, fresh, wait := r.decidePass(ctx, spec, qw, st, now, active)
	if !decided {
		return ctrl.Result{RequeueAfter: max(wait, minRequeue)}, nil
	}
	r.Metrics.observe(req.NamespacedName, d, view, fresh)
	if fresh {
		r.recordDecision(ctx, qw, d)
	}

	// QScaler's SDK workers act on the status they read, so in mode
	// QScalerSDK it is published before any pod is created or deleted.
	publishFirst := spec.Retirement == RetireQScalerSDK
	if publishFirst {
		if err := r.publish(ctx, qw, spec, hash, view, d, now, nil); err != nil {
			return ctrl.Result{}, err
		}
	}
	actErr := r.act(ctx, qw, spec, hash, view, d, now, synced)
	if !publishFirst || actErr != nil {
		if err := r.publish(ctx, qw, spec, hash, view, d, now, actErr); err != nil {
			return ctrl.Result{}, err
		}
	}
	if held := onlyHeld(actErr); held != nil {
		r.scheds().unsettle(req.NamespacedName)
		return ctrl.Result{RequeueAfter: min(held.Wait, spec.PollingInterval)}, nil
	}
	if actErr != nil {
		r.scheds().unsettle(req.NamespacedName)
		return ctrl.Result{}, actErr
	}
	if r.settle(spec, qw, d, view, active, now) {
		return ctrl.Result{RequeueAfter: settledResync, Priority: ptr.To(scheduledPriority)}, nil
	}
	return ctrl.Result{RequeueAfter: max(wait, minRequeue), Priority: ptr.To(scheduledPriority)}, nil
}

// scheduledPriority is the work-queue priority of a pass the schedule asks
// for (the next poll of a busy queue, a settled QWorker's resync). Events
// (a measurement that found a change, a push, a pod or spec change) enqueue
// at the default priority and go first, so when a thousand busy QWorkers
// keep the workers saturated (their status writes waiting on the client's
// rate limit), the first task on an idle queue still reaches a worker next.
const scheduledPriority = handler.LowPriority

// settle hands a QWorker this pass left settled to the poller (poller.go)
// and takes any other back from it; it reports which.
func (r *Reconciler) settle(spec workerSpec, qw *QWorker, d decision, view poolView, active int32, now time.Time) bool {
	ss := r.scheds()
	settled := false
	if s := ss.lookup(spec.Key); s != nil {
		s.mu.Lock()
		sample := s.lastSample
		s.mu.Unlock()
		settled = settledPool(spec, d, sample, view, active, r.exp.satisfied(spec.Key, now))
	}
	if !settled {
		ss.unsettle(spec.Key)
		return false
	}
	ss.settle(spec.Key, spec, qw.DeepCopy())
	return true
}

// publish builds the status of this pass and writes it if it changed,
// keeping qw's status in step with what was written.
func (r *Reconciler) publish(ctx context.Context, qw *QWorker, spec workerSpec, hash string, view poolView, d decision, now time.Time, actErr error) error {
	status := buildStatus(qw, spec, hash, view, d, now, actErr)
	markHeld(&status, actErr)
	if spec.ActivateVPA {
		r.applyVPA(ctx, qw, &status)
	}
	if err := r.writeStatus(ctx, qw, status, spec.Retirement == RetireQScalerSDK); err != nil {
		return err
	}
	qw.Status = status
	return nil
}

// measureWith measures through cached, the source a quiet poll used last,
// and, when there is none or it failed (its connection replaced after a
// ScalerConfig or Secret change, a broker error), through the source the
// ScalerConfig gives now. It returns the source that answered, for the
// next poll: looking a source up reads the ScalerConfig and its Secrets,
// which at thousands of idle QWorkers costs more than the measurement.
func (r *Reconciler) measureWith(ctx context.Context, spec workerSpec, qw *QWorker, cached source.Source) (source.Sample, source.Source, error) {
	if cached != nil {
		if s, err := r.measureBounded(ctx, spec, cached); err == nil {
			return s, cached, nil
		}
	}
	src, err := r.Sources.QWorkerSource(ctx, spec.Key.Namespace, spec.ScalerConfig, spec.Queue, spec.Key.Name)
	if err != nil {
		return source.Sample{}, nil, fmt.Errorf("ScalerConfig %s/%s: %w", spec.Key.Namespace, spec.ScalerConfig, err)
	}
	r.push.Ensure(spec.Key, qw, src)
	s, err := r.measureBounded(ctx, spec, src)
	if err != nil {
		return source.Sample{}, nil, err
	}
	return s, src, nil
}

// measureBounded measures src within measureTimeout.
func (r *Reconciler) measureBounded(ctx context.Context, spec workerSpec, src source.Source) (source.Sample, error) {
	mctx, cancel := context.WithTimeout(ctx, measureTimeout)
	defer cancel()
	s, err := r.measureSource(mctx, spec, src)
	if err != nil {
		return source.Sample{}, fmt.Errorf("measure queue %q: %w", spec.Queue, err)
	}
	return s, nil
}

// act removes finished pods, then — once earlier actions are visible in the
// cache — creates and retires exactly the pods the plan names. synced says
// they were already visible when view was listed.
func (r *Reconciler) act(ctx context.Context, qw *QWorker, spec workerSpec, hash string, view poolView, d decision, now time.Time, synced bool) error {
	var errs []error
	key := spec.Key
	for _, pod := range view.finished {
		errs = append(errs, r.deletePod(ctx, key, pod, "finished worker pod"))
	}
	for _, pod := range view.overdue {
		errs = append(errs, r.deletePod(ctx, key, pod, "retirement timeout passed or never started"))
	}
	errs = append(errs, r.stampRetireAt(ctx, view.unstamped, now))
	errs = append(errs, r.relabel(ctx, qw.Name, view))
	r.holds.observeCrashes(key, now, hash, view.finished, workerStayedUp(view.byName, now))
	if !synced || !r.exp.satisfied(key, now) {
		log.FromContext(ctx).V(1).Info("waiting for earlier pod changes to reach the cache")
		return errors.Join(errs...)
	}
	plan := policy.PlanPool(view.workers, policy.PoolTarget{Desired: d.Desired, Hash: hash, MaxSurge: spec.surge(d.Desired)})
	if len(plan.Retire) > 0 {
		errs = append(errs, r.retire(ctx, qw, spec, view, plan.Retire, d.Desired, now))
	}
	if plan.Create > 0 {
		if err := r.create(ctx, qw, spec, hash, int(plan.Create), now); err != nil {
			if held := onlyHeld(err); held != nil && errors.Join(errs...) == nil {
				return held
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// retire marks (Cooperative, and QScalerSDK draining to zero) or deletes
// (Delete, QScalerSDK above zero) exactly the named pods.
func (r *Reconciler) retire(ctx context.Context, qw *QWorker, spec workerSpec, view poolView, names []string, desired int32, now time.Time) error {
	var errs []error
	drain := qscalerDrains(spec.Retirement, desired)
	for _, name := range names {
		pod := view.byName[name]
		if pod == nil {
			continue
		}
		if spec.Retirement == RetireDelete || (spec.Retirement == RetireQScalerSDK && !drain) {
			errs = append(errs, r.deletePod(ctx, spec.Key, pod, "retired"))
			continue
		}
		if neverStarted(pod) {
			// Nobody is there to read a mark.
			errs = append(errs, r.deletePod(ctx, spec.Key, pod, "retired before it started"))
			continue
		}
		// Until the cache shows the mark, the pool must not be re-planned:
		// a stale view would choose more pods to retire.
		r.exp.expect(spec.Key, now, 0, []string{name})
		patch := client.MergeFrom(pod.DeepCopy())
		pod = pod.DeepCopy()
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[AnnotationRetire] = "true"
		pod.Annotations[AnnotationRetireAt] = now.UTC().Format(time.RFC3339)
		if err := r.Client.Patch(ctx, pod, patch); err != nil {
			r.exp.observed(spec.Key, name)
			if !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("mark pod %s for retirement: %w", name, err))
			}
		}
	}
	r.Metrics.podsRetired.Add(float64(len(names) - len(errs)))
	verb := map[RetirementMode]string{RetireDelete: "deleting", RetireQScalerSDK: "deleting", RetireCooperative: "retiring"}[spec.Retirement]
	if drain {
		verb = "draining (each leaves after its task)"
	}
	r.Recorder.Eventf(qw, corev1.EventTypeNormal, "RetiringPods", "%s %d worker pod(s): %s", verb, len(names), strings.Join(names, ", "))
	return errors.Join(errs...)
}

// deletePod deletes a pod with its grace period, expecting the deletion.
func (r *Reconciler) deletePod(ctx context.Context, key types.NamespacedName, pod *corev1.Pod, why string) error {
	if pod.DeletionTimestamp != nil {
		return nil
	}
	r.exp.expect(key, r.Clock.Now(), 0, []string{pod.Name})
	err := r.Client.Delete(ctx, pod, client.Preconditions{UID: &pod.UID})
	if err != nil {
		r.exp.observed(key, pod.Name)
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return fmt.Errorf("delete pod %s (%s): %w", pod.Name, why, err)
	}
	log.FromContext(ctx).V(1).Info("deleted worker pod", "pod", pod.Name, "why", why)
	return nil
}

// recordDecision emits an event when the desired count changes or the
// source fails, with the inputs of the decision. A source's full error goes
// to the controller's log only.
func (r *Reconciler) recordDecision(ctx context.Context, qw *QWorker, d decision) {
	if d.MeasureErr != nil {
		log.FromContext(ctx).Info("measuring the queue failed", "error", d.MeasureErr.Error())
		// The source's error without what a non-broker answered (see
		// brokersource.Describe): the QWorker's author reads events.
		r.Recorder.Eventf(qw, corev1.EventTypeWarning, "SourceFailed", "%s; %s", brokersource.Describe(d.MeasureErr), d.Reason)
		return
	}
	if d.Desired == d.Previous {
		return
	}
	reason := "ScaledUp"
	if d.Desired < d.Previous {
		reason = "ScaledDown"
	}
	r.Recorder.Eventf(qw, corev1.EventTypeNormal, reason, "desired %d → %d: %s", d.Previous, d.Desired, d.Reason)
}

// reportInvalid records a spec the API accepted but Swell cannot act on
// (validation that CEL cannot express), without touching the pods.
func (r *Reconciler) reportInvalid(ctx context.Context, qw *QWorker, err error) (ctrl.Result, error) {
	r.Recorder.Eventf(qw, corev1.EventTypeWarning, "InvalidSpec", "%v", err)
	status := *qw.Status.DeepCopy()
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type: ConditionReady, Status: metav1.ConditionFalse, Reason: "InvalidSpec", Message: err.Error(), ObservedGeneration: qw.Generation,
	})
	if werr := r.writeStatus(ctx, qw, status, true); werr != nil {
		return ctrl.Result{}, fmt.Errorf("report invalid spec: %w", werr)
	}
	return ctrl.Result{}, nil
}

// applyVPA records peak container usage in the status, or says in a
// condition why it could not (the metrics API may be missing).
func (r *Reconciler) applyVPA(ctx context.Context, qw *QWorker, status *qv1.QWorkerStatus) {
	peaks, err := r.observeVPA(ctx, qw, status.MaxContainerResourcesUsage)
	cond := metav1.Condition{Type: ConditionMetricsAvailable, Status: metav1.ConditionTrue, Reason: "Observed",
		Message: "peak container usage read from metrics.k8s.io", ObservedGeneration: qw.Generation}
	if err != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "MetricsUnavailable", err.Error()
	} else {
		status.MaxContainerResourcesUsage = peaks
	}
	meta.SetStatusCondition(&status.Conditions, cond)
}

// applyScalerConfigInterval uses the ScalerConfig's pollingIntervalSeconds
// when the QWorker sets none of its own. A missing ScalerConfig is reported
// by the measurement, not here.
func (r *Reconciler) applyScalerConfigInterval(ctx context.Context, qw *QWorker, spec *workerSpec) {
	if qw.Spec.ScaleConfig.PollingIntervalSeconds != nil {
		return
	}
	sc := &qv1.ScalerConfig{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: qw.Namespace, Name: spec.ScalerConfig}, sc); err != nil {
		return
	}
	if p := sc.Spec.PollingIntervalSeconds; p != nil && *p > 0 {
		spec.PollingInterval = time.Duration(*p) * time.Second
	}
}
