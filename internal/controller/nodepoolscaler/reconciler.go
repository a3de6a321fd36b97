package nodepoolscaler

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// Condition reasons.
const (
	ReasonPassSucceeded       = "PassSucceeded"
	ReasonPassFailed          = "PassFailed"
	ReasonInvalidSpec         = "InvalidSpec"
	ReasonSecretUnavailable   = "SecretUnavailable"
	ReasonProviderUnavailable = "ProviderUnavailable"
	ReasonProviderAnswered    = "ProviderAnswered"
	ReasonProviderError       = "ProviderError"
	ReasonNotStarted          = "NotStarted"
	// ReasonPublishing and ReasonNoProvider report a cloudProvider none
	// object, which only publishes its CapacityBuffer.
	ReasonPublishing = "PublishingCapacityBuffer"
	ReasonNoProvider = "NoProvider"
)

// setupError is why a runner could not be built, with the condition reason
// it reports.
type setupError struct {
	reason string
	err    error
}

func (e *setupError) Error() string { return e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }

// Reconciler runs `swell nodepool`'s scaler for each NodePoolScaler: one
// decision pass per reconcile (on the tick, and on node and server-pod
// changes), then one status write.
//
// Nodes: the scaler cordons and uncordons (patch) and re-reads before
// deleting (get); only the kwok provider creates and deletes Node objects,
// through the separate config/rbac/kwok role. Pods: every pod's requests
// count toward a node's free slots. Secrets: the provider token, read live
// through config/rbac/secrets.
//
// +kubebuilder:rbac:groups=swell.dev,resources=nodepoolscalers,verbs=get;list;watch
// +kubebuilder:rbac:groups=swell.dev,resources=nodepoolscalers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch;patch;update
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods/eviction,verbs=create
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
type Reconciler struct {
	Client client.Client
	// APIReader reads the token Secret uncached: the controller then needs
	// no cluster-wide Secret watch, and a rotated token is seen at once.
	APIReader client.Reader
	Recorder  record.EventRecorder
	Clock     clock.WithTicker

	builder *runnerBuilder
	runners *runners
}

// Reconcile runs one pass for a NodePoolScaler and reports it.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var nps swellv1.NodePoolScaler
	if err := r.Client.Get(ctx, req.NamespacedName, &nps); err != nil {
		if apierrors.IsNotFound(err) {
			r.runners.remove(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("get NodePoolScaler %s: %w", req.NamespacedName, err)
	}
	if nps.DeletionTimestamp != nil {
		r.runners.remove(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	base := nps.DeepCopy()
	run, err := r.runnerFor(ctx, &nps)
	if err != nil {
		return r.reportSetupError(ctx, base, &nps, err)
	}
	if run.scaler == nil {
		r.setPublishOnly(&nps, run)
		if err := r.writeStatus(ctx, base, &nps); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, nil
	}
	d, passErr := run.scaler.Pass(ctx)
	r.emit(&nps, passErr)
	r.setStatus(&nps, run, d, passErr)
	if err := r.writeStatus(ctx, base, &nps); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: run.tick}, nil
}

// runnerFor returns the object's running scaler, building it on first
// sight, on a spec change (generation) or a token change.
func (r *Reconciler) runnerFor(ctx context.Context, nps *swellv1.NodePoolScaler) (*runner, error) {
	key := types.NamespacedName{Namespace: nps.Namespace, Name: nps.Name}
	sec, err := r.secrets(ctx, nps)
	if err != nil {
		return nil, &setupError{ReasonSecretUnavailable, err}
	}
	print := fingerprint(nps.Generation, sec)
	if run := r.runners.get(key); run != nil && run.fingerprint == print {
		return run, nil
	}
	cfg, err := ConfigFromSpec(nps.Spec, sec)
	if err != nil {
		return nil, &setupError{ReasonInvalidSpec, err}
	}
	run, err := r.builder.build(ctx, nps, cfg, print, r.runners.state(key))
	if err != nil {
		return nil, &setupError{ReasonProviderUnavailable, err}
	}
	r.runners.put(key, run)
	return run, nil
}

// secrets reads the Secrets the spec names, in the object's namespace,
// live on every reconcile: the provider token (none for kwok,
// clusterapi and none) and hetzner's cloud-init.
func (r *Reconciler) secrets(ctx context.Context, nps *swellv1.NodePoolScaler) (Secrets, error) {
	var sec Secrets
	if ref := nps.Spec.CloudProviderTokenSecretRef; ref != nil {
		v, err := r.secretKey(ctx, nps.Namespace, "spec.cloudProviderTokenSecretRef", ref.Name, tokenKey(ref))
		if err != nil {
			return Secrets{}, err
		}
		sec.Token = strings.TrimSpace(string(v))
	}
	if ref := nps.Spec.HcloudCloudInitSecretRef; ref != nil {
		v, err := r.secretKey(ctx, nps.Namespace, "spec.hcloudCloudInitSecretRef", ref.Name, cloudInitKey(ref))
		if err != nil {
			return Secrets{}, err
		}
		sec.CloudInit = v
	}
	return sec, nil
}

// secretKey reads one non-empty key of a Secret; errors name the field
// that points at it, never the value.
func (r *Reconciler) secretKey(ctx context.Context, namespace, field, name, key string) ([]byte, error) {
	var s corev1.Secret
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &s); err != nil {
		return nil, fmt.Errorf("%s: read Secret %s/%s: %w", field, namespace, name, err)
	}
	v, ok := s.Data[key]
	if !ok || len(strings.TrimSpace(string(v))) == 0 {
		return nil, fmt.Errorf("%s: Secret %s/%s has no key %q (or it is empty)", field, namespace, name, key)
	}
	return v, nil
}

// reportSetupError reports why no pass could run. A spec the decoder
// rejects waits for an edit (which reconciles it); a missing Secret or an
// unreachable provider is retried with backoff.
func (r *Reconciler) reportSetupError(ctx context.Context, base, nps *swellv1.NodePoolScaler, err error) (ctrl.Result, error) {
	reason := ReasonPassFailed
	var se *setupError
	if errors.As(err, &se) {
		reason = se.reason
	}
	r.Recorder.Event(nps, corev1.EventTypeWarning, reason, err.Error())
	nps.Status.ObservedGeneration = nps.Generation
	r.setCondition(nps, swellv1.ConditionReady, metav1.ConditionFalse, reason, err.Error())
	switch reason {
	case ReasonProviderUnavailable:
		r.setCondition(nps, swellv1.ConditionProviderHealthy, metav1.ConditionFalse, reason, err.Error())
	default:
		if meta.FindStatusCondition(nps.Status.Conditions, swellv1.ConditionProviderHealthy) == nil {
			r.setCondition(nps, swellv1.ConditionProviderHealthy, metav1.ConditionUnknown, ReasonNotStarted, "no provider built yet")
		}
	}
	if werr := r.writeStatus(ctx, base, nps); werr != nil {
		return ctrl.Result{}, werr
	}
	if reason == ReasonInvalidSpec {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, err
}

// emit reports a failed pass as an event; the actions themselves arrive
// through the scaler's recorder (teeRecorder). Actions held back (cooldown,
// maximum) go to the Ready condition's message instead: they change on
// most passes, and as events they would spend the object's event budget
// (the recorder's spam filter) before the actions that matter.
func (r *Reconciler) emit(nps *swellv1.NodePoolScaler, passErr error) {
	if passErr != nil {
		r.Recorder.Event(nps, corev1.EventTypeWarning, ReasonPassFailed, passErr.Error())
	}
}

// setStatus fills the status from the scaler's last decision (a pass that
// failed before deciding leaves the previous figures) and the conditions.
func (r *Reconciler) setStatus(nps *swellv1.NodePoolScaler, run *runner, d nodepool.Decision, passErr error) {
	last := run.scaler.Last()
	st := &nps.Status
	st.ObservedGeneration = nps.Generation
	st.PoolSize, st.NodesReady, st.NodesBooting, st.NodesCordoned = int32(last.Size), int32(last.Ready), int32(last.Booting), int32(last.Cordoned)
	st.SlotsFree, st.SlotsUsed, st.SlotsWanted, st.SlotsIncoming = last.Free, last.InUse, last.Wanted, last.Incoming
	if action := describe(d); action != "" {
		now := metav1.NewTime(r.Clock.Now())
		st.LastAction, st.LastActionTime = action, &now
	}
	if passErr != nil {
		r.setCondition(nps, swellv1.ConditionReady, metav1.ConditionFalse, ReasonPassFailed, passErr.Error())
	} else {
		msg := fmt.Sprintf("%d free of %d wanted slots on %d nodes", last.Free, last.Wanted, last.Size)
		if len(d.Notes) > 0 {
			msg += "; held: " + strings.Join(d.Notes, "; ")
		}
		r.setCondition(nps, swellv1.ConditionReady, metav1.ConditionTrue, ReasonPassSucceeded, msg)
	}
	r.setProviderHealth(nps, run)
}

// setPublishOnly reports a cloudProvider none object: no pass runs, its
// publisher keeps the CapacityBuffer in step on its own.
func (r *Reconciler) setPublishOnly(nps *swellv1.NodePoolScaler, run *runner) {
	nps.Status.ObservedGeneration = nps.Generation
	r.setCondition(nps, swellv1.ConditionReady, metav1.ConditionTrue, ReasonPublishing,
		fmt.Sprintf("cloudProvider none: publishing the buffer as CapacityBuffer %s; the node autoscaler that owns the nodes acts on it", run.publishOnly))
	r.setCondition(nps, swellv1.ConditionProviderHealthy, metav1.ConditionTrue, ReasonNoProvider, "cloudProvider none: no provider to call")
}

func (r *Reconciler) setProviderHealth(nps *swellv1.NodePoolScaler, run *runner) {
	called, err := run.health.Health()
	switch {
	case !called:
		r.setCondition(nps, swellv1.ConditionProviderHealthy, metav1.ConditionUnknown, ReasonNotStarted, "the provider was not called yet")
	case err != nil:
		r.setCondition(nps, swellv1.ConditionProviderHealthy, metav1.ConditionFalse, ReasonProviderError, err.Error())
	default:
		r.setCondition(nps, swellv1.ConditionProviderHealthy, metav1.ConditionTrue, ReasonProviderAnswered, "the provider answered its last call")
	}
}

// describe summarises a decision's actions for status.lastAction; "" when
// the pass changed nothing.
func describe(d nodepool.Decision) string {
	var parts []string
	add := func(verb string, names []string) {
		if len(names) > 0 {
			parts = append(parts, verb+" "+strings.Join(names, ", "))
		}
	}
	add("uncordoned", d.Uncordon)
	add("cordoned", d.Cordon)
	add("deleted", d.Delete)
	if d.Resize > 0 {
		parts = append(parts, fmt.Sprintf("resized %d → %d", d.Size, d.Resize))
	}
	return strings.Join(parts, "; ")
}

// setCondition sets a condition with the injected clock's time.
func (r *Reconciler) setCondition(nps *swellv1.NodePoolScaler, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&nps.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: truncate(msg),
		ObservedGeneration: nps.Generation, LastTransitionTime: metav1.NewTime(r.Clock.Now()),
	})
}

// truncate keeps a condition message within the API's 32 KiB limit.
func truncate(s string) string {
	const limit = 32 * 1024
	if len(s) <= limit {
		return s
	}
	return s[:limit-3] + "..."
}

// writeStatus writes the status once per pass, as a merge patch from what
// was read, so a concurrent spec edit is not overwritten.
func (r *Reconciler) writeStatus(ctx context.Context, base, nps *swellv1.NodePoolScaler) error {
	if err := r.Client.Status().Patch(ctx, nps, client.MergeFrom(base)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("write status of NodePoolScaler %s/%s: %w", nps.Namespace, nps.Name, err)
	}
	return nil
}
