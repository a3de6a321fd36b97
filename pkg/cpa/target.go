package cpa

import (
	"context"
	"fmt"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/scale"
)

// TargetState is the scaled object as one tick sees it.
type TargetState struct {
	// Object is the full target (what user logic receives as `resource`).
	Object *unstructured.Unstructured
	// Replicas is spec.replicas of the scale subresource.
	Replicas int32
	// Selector selects the target's pods (status.selector of the scale).
	Selector labels.Selector
	// scale is kept for an optimistic-concurrency update.
	scale *autoscalingv1.Scale
}

// Target reads and scales the scaleTargetRef. The cluster implementation
// works for any kind with a scale subresource; tests use a fake.
type Target interface {
	Get(ctx context.Context) (*TargetState, error)
	Pods(ctx context.Context, s *TargetState) ([]corev1.Pod, error)
	// Scale sets the replica count; a conflict with another writer is an
	// error (the next tick retries on fresh data).
	Scale(ctx context.Context, s *TargetState, replicas int32) error
}

// clusterTarget implements Target with the scale client, a dynamic client
// for the full object and a discovery-based REST mapper.
type clusterTarget struct {
	ref       autoscalingv2.CrossVersionObjectReference
	namespace string
	mapper    *restmapper.DeferredDiscoveryRESTMapper
	scales    scale.ScalesGetter
	dynamic   dynamic.Interface
	client    kubernetes.Interface
}

// gvr maps the reference to its resource, refreshing discovery once when
// the kind is unknown (a CRD installed after start).
func (t *clusterTarget) gvr() (schema.GroupVersionResource, error) {
	gv, err := schema.ParseGroupVersion(t.ref.APIVersion)
	if err != nil {
		return schema.GroupVersionResource{}, fmt.Errorf("scaleTargetRef.apiVersion %q: %w", t.ref.APIVersion, err)
	}
	gk := schema.GroupKind{Group: gv.Group, Kind: t.ref.Kind}
	m, err := t.mapper.RESTMapping(gk, gv.Version)
	if meta.IsNoMatchError(err) {
		t.mapper.Reset()
		m, err = t.mapper.RESTMapping(gk, gv.Version)
	}
	if err != nil {
		return schema.GroupVersionResource{}, fmt.Errorf("scaleTargetRef %s %s: %w", t.ref.APIVersion, t.ref.Kind, err)
	}
	return m.Resource, nil
}

func (t *clusterTarget) Get(ctx context.Context) (*TargetState, error) {
	gvr, err := t.gvr()
	if err != nil {
		return nil, err
	}
	sc, err := t.scales.Scales(t.namespace).Get(ctx, gvr.GroupResource(), t.ref.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get scale of %s %s/%s: %w", t.ref.Kind, t.namespace, t.ref.Name, err)
	}
	obj, err := targetObject(sc)(t.dynamic.Resource(gvr).Namespace(t.namespace).Get(ctx, t.ref.Name, metav1.GetOptions{}))
	if err != nil {
		return nil, fmt.Errorf("get %s %s/%s: %w", t.ref.Kind, t.namespace, t.ref.Name, err)
	}
	sel, err := labels.Parse(sc.Status.Selector)
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: scale status.selector %q: %w", t.ref.Kind, t.namespace, t.ref.Name, sc.Status.Selector, err)
	}
	return &TargetState{Object: obj, Replicas: sc.Spec.Replicas, Selector: sel, scale: sc}, nil
}

// targetObject chooses what user logic receives as `resource`: the full
// target when it can be read, else, when RBAC forbids reading that kind, its
// scale subresource (metadata, spec.replicas, status). The controller's role
// grants get on the kinds it knows (Deployments, StatefulSets, ReplicaSets,
// QWorkers) rather than on every resource, which would include Secrets; an
// operator grants more for custom kinds whose fields their methods read.
func targetObject(sc *autoscalingv1.Scale) func(*unstructured.Unstructured, error) (*unstructured.Unstructured, error) {
	return func(obj *unstructured.Unstructured, err error) (*unstructured.Unstructured, error) {
		if err == nil {
			return obj, nil
		}
		if !apierrors.IsForbidden(err) {
			return nil, err
		}
		m, convErr := runtime.DefaultUnstructuredConverter.ToUnstructured(sc)
		if convErr != nil {
			return nil, fmt.Errorf("%w (and its scale cannot stand in: %w)", err, convErr)
		}
		u := &unstructured.Unstructured{Object: m}
		u.SetAPIVersion("autoscaling/v1")
		u.SetKind("Scale")
		return u, nil
	}
}

func (t *clusterTarget) Pods(ctx context.Context, s *TargetState) ([]corev1.Pod, error) {
	if s.Selector.Empty() {
		return nil, fmt.Errorf("%s %s/%s: its scale subresource reports no pod selector", t.ref.Kind, t.namespace, t.ref.Name)
	}
	l, err := t.client.CoreV1().Pods(t.namespace).List(ctx, metav1.ListOptions{LabelSelector: s.Selector.String()})
	if err != nil {
		return nil, fmt.Errorf("list pods of %s %s/%s: %w", t.ref.Kind, t.namespace, t.ref.Name, err)
	}
	for i := range l.Items {
		l.Items[i].APIVersion, l.Items[i].Kind = "v1", "Pod"
	}
	return l.Items, nil
}

func (t *clusterTarget) Scale(ctx context.Context, s *TargetState, replicas int32) error {
	gvr, err := t.gvr()
	if err != nil {
		return err
	}
	if err := updateScale(ctx, t.scales.Scales(t.namespace), gvr.GroupResource(), s.scale, replicas); err != nil {
		return fmt.Errorf("scale %s %s/%s to %d: %w", t.ref.Kind, t.namespace, t.ref.Name, replicas, err)
	}
	return nil
}

// updateScale sets read's spec.replicas to replicas. A conflict is retried
// once on a fresh read, but only when the count is still the one the pass
// decided from: a controller writing the target's status moves its
// resourceVersion without making the decision stale, while another writer
// changing the count does, and then the pass fails as before.
func updateScale(ctx context.Context, scales scale.ScaleInterface, gr schema.GroupResource, read *autoscalingv1.Scale, replicas int32) error {
	sc := read.DeepCopy()
	sc.Spec.Replicas = replicas
	_, err := scales.Update(ctx, gr, sc, metav1.UpdateOptions{})
	if !apierrors.IsConflict(err) {
		return err
	}
	fresh, gerr := scales.Get(ctx, gr, read.Name, metav1.GetOptions{})
	if gerr != nil {
		return fmt.Errorf("%w (re-read: %w)", err, gerr)
	}
	if fresh.Spec.Replicas != read.Spec.Replicas {
		return fmt.Errorf("%w (replicas changed from %d to %d meanwhile)", err, read.Spec.Replicas, fresh.Spec.Replicas)
	}
	fresh.Spec.Replicas = replicas
	_, err = scales.Update(ctx, gr, fresh, metav1.UpdateOptions{})
	return err
}
