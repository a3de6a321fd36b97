// Package scalerconfig reconciles ScalerConfigs: it checks that Swell can
// reach the broker and reports it in QScaler's status fields (healthy,
// message) and a Reachable condition, so a broken broker is visible on the
// object users wrote, not only in the controller's logs.
package scalerconfig

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/brokersource"
	"github.com/swell-autoscaler/swell/internal/controller/shard"
)

// ConditionReachable says whether the broker answered the last check.
const ConditionReachable = "Reachable"

// pingTimeout bounds one health check.
const pingTimeout = 5 * time.Second

// Pinger checks a ScalerConfig's broker and forgets deleted ones.
type Pinger interface {
	Ping(ctx context.Context, sc *qv1.ScalerConfig) error
	Forget(key types.NamespacedName)
}

// Reconciler reconciles ScalerConfigs.
type Reconciler struct {
	Client   client.Client
	Recorder record.EventRecorder
	Pinger   Pinger
	// Interval between health checks; default 30 s.
	Interval time.Duration
}

// Setup registers the reconciler with mgr. With ring set, this replica
// serves only the ScalerConfigs the ring assigns it (see package shard).
func Setup(mgr ctrl.Manager, p Pinger, interval time.Duration, ring shard.Membership) error {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	r := &Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("swell-scalerconfig"), Pinger: p, Interval: interval} //nolint:staticcheck // see qworker.Setup
	b := ctrl.NewControllerManagedBy(mgr).Named("scalerconfig").For(&qv1.ScalerConfig{})
	return shard.Complete(b, mgr, ring, r,
		func() client.Object { return &qv1.ScalerConfig{} }, func() client.ObjectList { return &qv1.ScalerConfigList{} })
}

// Release forgets the broker check of a ScalerConfig another replica now
// serves (shard.Releaser).
func (r *Reconciler) Release(key types.NamespacedName) { r.Pinger.Forget(key) }

// Reconcile pings the broker and writes the result.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	sc := &qv1.ScalerConfig{}
	if err := r.Client.Get(ctx, req.NamespacedName, sc); err != nil {
		if apierrors.IsNotFound(err) {
			r.Pinger.Forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	err := r.Pinger.Ping(pctx, sc)
	updated := sc.DeepCopy()
	updated.Status.ObservedGeneration = sc.Generation
	cond := metav1.Condition{Type: ConditionReachable, Status: metav1.ConditionTrue, Reason: "Reachable", Message: fmt.Sprintf("%s broker answered", sc.Spec.Type), ObservedGeneration: sc.Generation}
	updated.Status.Healthy, updated.Status.Message = true, ""
	if err != nil {
		// The author reads status and events: say what failed, never what
		// a non-broker at their address answered (brokersource.Describe).
		msg := brokersource.Describe(err)
		updated.Status.Healthy, updated.Status.Message = false, msg
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Unreachable", msg
	}
	meta.SetStatusCondition(&updated.Status.Conditions, cond)
	// An event on every change of reachability, including the first
	// measurement of a ScalerConfig that is broken from the start.
	if prev := meta.FindStatusCondition(sc.Status.Conditions, ConditionReachable); prev == nil || prev.Status != cond.Status {
		if err != nil {
			log.FromContext(ctx).Info("broker unreachable", "error", err.Error())
			r.Recorder.Eventf(sc, corev1.EventTypeWarning, "BrokerUnreachable", "%s", cond.Message)
		} else {
			r.Recorder.Eventf(sc, corev1.EventTypeNormal, "BrokerReachable", "%s broker answered", sc.Spec.Type)
		}
	}
	if equality.Semantic.DeepEqual(sc.Status, updated.Status) {
		// A healthy broker still healthy: an empty patch is still a
		// write request to the API server, every interval.
		return ctrl.Result{RequeueAfter: r.Interval}, nil
	}
	if werr := r.Client.Status().Patch(ctx, updated, client.MergeFrom(sc)); werr != nil {
		return ctrl.Result{}, fmt.Errorf("write ScalerConfig status: %w", werr)
	}
	return ctrl.Result{RequeueAfter: r.Interval}, nil
}
