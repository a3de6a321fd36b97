package qworker

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/brokersource"
	"github.com/swell-autoscaler/swell/pkg/policy"
	"github.com/swell-autoscaler/swell/pkg/policy/hpav2"
	"github.com/swell-autoscaler/swell/pkg/policy/waittime"
)

// QWorker is the reconciled kind.
type QWorker = qv1.QWorker

// GroupVersion is the QWorker API's group and version.
var GroupVersion = qv1.GroupVersion

// Condition types on a QWorker.
const (
	// ConditionReady: the pool matches the decision (no pods pending
	// creation, none waiting to retire) and the spec is valid.
	ConditionReady = "Ready"
	// ConditionSourceHealthy: the last measurement of the queue worked.
	ConditionSourceHealthy = "SourceHealthy"
	// ConditionMetricsAvailable (activateVPA only): metrics.k8s.io answered.
	ConditionMetricsAvailable = "MetricsAvailable"
)

// ownerIndex indexes pods by the name of their controlling QWorker.
const ownerIndex = ".metadata.controller.qworker"

// getQWorker reads a QWorker from the cache, with the status this replica
// last asked for laid over it until the cache shows it (statuswriter.go).
func (r *Reconciler) getQWorker(ctx context.Context, key types.NamespacedName) (*QWorker, error) {
	qw := &QWorker{}
	if err := r.Client.Get(ctx, key, qw); err != nil {
		return nil, err
	}
	r.statuses().overlay(qw)
	return qw, nil
}

// ownedPods lists the pods whose controller is qw, from the cache. Pods that
// dropped their owner reference (QScaler's exit protocol) are not listed:
// they are leaving and must not be counted twice.
func (r *Reconciler) ownedPods(ctx context.Context, qw *QWorker) ([]corev1.Pod, error) {
	var list corev1.PodList
	if err := r.Client.List(ctx, &list, client.InNamespace(qw.Namespace), client.MatchingFields{ownerIndex: qw.Name}); err != nil {
		return nil, fmt.Errorf("list pods of QWorker %s/%s: %w", qw.Namespace, qw.Name, err)
	}
	pods := list.Items[:0]
	for _, p := range list.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == qw.UID {
			pods = append(pods, p)
		}
	}
	return pods, nil
}

// decodeSpec turns the API object into the reconciler's plain view and
// checks what CEL validation cannot.
func decodeSpec(qw *QWorker) (workerSpec, error) {
	sc := qw.Spec.ScaleConfig
	s := workerSpec{
		Key:             types.NamespacedName{Namespace: qw.Namespace, Name: qw.Name},
		PodSpec:         &qw.Spec.PodSpec,
		ScalerConfig:    sc.ScalerConfigRef,
		Queue:           sc.Queue,
		ActivateVPA:     sc.ActivateVPA,
		Retirement:      RetireCooperative,
		RetireTimeout:   defaultRetireTimeout,
		PollingInterval: defaultPollingInterval,
		Fallback:        policy.Fallback{FailureThreshold: defaultFailures},
		Sizing: policy.QueueSizing{
			MinReplicas: sc.MinReplicas, MaxReplicas: sc.MaxReplicas,
			ScalingFactor: sc.ScalingFactor, CountInFlight: sc.CountInFlight,
		},
	}
	if sc.ActivationThreshold != nil {
		s.Sizing.ActivationThreshold = *sc.ActivationThreshold
	}
	if sc.PollingIntervalSeconds != nil {
		s.PollingInterval = time.Duration(*sc.PollingIntervalSeconds) * time.Second
	}
	if f := sc.Fallback; f != nil {
		s.Fallback.FailureThreshold = int(f.FailureThreshold)
		if f.Replicas != nil {
			s.Fallback.Replicas = *f.Replicas
		}
	}
	if r := sc.Retirement; r != nil {
		if r.Mode != "" {
			s.Retirement = RetirementMode(r.Mode)
		}
		if r.TimeoutSeconds != nil {
			s.RetireTimeout = time.Duration(*r.TimeoutSeconds) * time.Second
		}
		if r.MaxSurge != nil {
			s.MaxSurge = *r.MaxSurge
		}
	}
	if sc.Behavior != nil {
		b, err := hpav2.Behavior(sc.Behavior)
		if err != nil {
			return s, fmt.Errorf("spec.scaleConfig.%w", err)
		}
		if err := b.Validate(); err != nil {
			return s, fmt.Errorf("spec.scaleConfig.behavior: %w", err)
		}
		s.Behavior = &b
	}
	if err := s.Sizing.Validate(); err != nil {
		return s, fmt.Errorf("spec.scaleConfig: %w", err)
	}
	if sc.TargetWaitSeconds != nil {
		t := waittime.Target{Wait: time.Duration(*sc.TargetWaitSeconds * float64(time.Second)), Percentile: waittime.DefaultPercentile}
		if sc.TargetPercentile != nil {
			t.Percentile = *sc.TargetPercentile
		}
		if err := t.Validate(); err != nil {
			return s, fmt.Errorf("spec.scaleConfig.%w", err)
		}
		s.WaitTarget = &t
	}
	return s, nil
}

// buildStatus is the status after this reconcile.
func buildStatus(qw *QWorker, spec workerSpec, hash string, view poolView, d decision, now time.Time, actErr error) qv1.QWorkerStatus {
	st := *qw.Status.DeepCopy()
	st.CurrentReplicas = publishedCurrent(spec.Retirement, view.alive, d.Desired)
	st.ReadyReplicas = view.ready
	st.DesiredReplicas = d.Desired
	st.CurrentPodSpecHash = hash
	st.ObservedGeneration = qw.Generation
	st.Selector = labels.SelectorFromSet(labels.Set{LabelQWorker: qw.Name}).String()
	if d.Measured {
		b := d.Backlog
		st.Backlog = &b
	}
	switch {
	case d.Wait != nil:
		st.WaitModel = d.Wait.Model
	case spec.WaitTarget == nil:
		st.WaitModel = nil
	}
	if st.LastDecision == nil || st.LastDecision.Desired != d.Desired || st.LastDecision.Reason != d.Reason {
		st.LastDecision = &qv1.Decision{Time: metav1.NewTime(now), Backlog: d.Backlog, Desired: d.Desired, Previous: d.Previous, Reason: d.Reason}
	}
	// Condition messages carry no fast-moving numbers (the backlog is in
	// status.backlog and lastDecision): a message that changed with every
	// measurement would be a status write on every poll.
	source := metav1.Condition{Type: ConditionSourceHealthy, Status: metav1.ConditionTrue, Reason: "Measured",
		Message: fmt.Sprintf("queue %q measured every %s", spec.Queue, spec.PollingInterval), ObservedGeneration: qw.Generation}
	if d.MeasureErr != nil {
		source.Status, source.Reason, source.Message = metav1.ConditionFalse, "MeasureFailed", outageMessage(spec, d, view)
	}
	meta.SetStatusCondition(&st.Conditions, source)
	ready := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "PoolAtDesired", ObservedGeneration: qw.Generation,
		Message: fmt.Sprintf("%d of %d worker pods ready", view.ready, d.Desired)}
	switch {
	case actErr != nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "ActionFailed", actErr.Error()
	case view.ready != d.Desired || int32(len(view.workers)) != d.Desired:
		ready.Status, ready.Reason = metav1.ConditionFalse, "Scaling"
	}
	meta.SetStatusCondition(&st.Conditions, ready)
	return st
}

// writeStatus has the status written when it changed: in the background
// (statuswriter.go), or before it returns when now is set or no writer
// runs (a reconciler built without Setup).
func (r *Reconciler) writeStatus(ctx context.Context, qw *QWorker, status qv1.QWorkerStatus, now bool) error {
	w := r.statuses()
	if now || !r.statusAsync {
		return w.writeNow(ctx, qw, status)
	}
	w.submit(qw, status)
	return nil
}

// statuses returns the status writer, made on first use for reconcilers
// built without Setup (unit tests), which write inline.
func (r *Reconciler) statuses() *statusWriter {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status == nil {
		var clk clock.PassiveClock = clock.RealClock{}
		if r.Clock != nil {
			clk = r.Clock
		}
		r.status = newStatusWriter(r.Client, clk)
	}
	return r.status
}

// outageMessage says why the source failed and what the pool does meanwhile,
// naming the worker pods really running, not only the held decision.
func outageMessage(spec workerSpec, d decision, view poolView) string {
	action := fmt.Sprintf("holding %d replicas", d.Desired)
	if d.FallingBack && spec.Fallback.Replicas > 0 && d.Desired == spec.Fallback.Replicas {
		action = fmt.Sprintf("fallback to %d replicas", d.Desired)
	}
	return fmt.Sprintf("%s; %s (%d worker pods running)", brokersource.Describe(d.MeasureErr), action, view.alive)
}
