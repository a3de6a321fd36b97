package podautoscaler

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// What a PodAutoscaler's methods receive as `resource`.
//
// CPA sends the whole target (or pod) to its methods; inside Swell's
// controller that would hand a tenant, through their own metric or
// evaluate server, whatever the controller can read of the objects in
// their namespace: pod templates with literal environment values, the
// last-applied annotation holding the whole spec, pods the tenant may have
// no right to read. So by default the methods receive a view: the object's
// identity (apiVersion, kind, name, namespace, uid, labels, generation,
// creation time), spec.replicas and spec.selector, and status. Status is
// what the cluster observed (counts, phase, pod IPs, conditions); Secrets
// never appear there. The operator may opt in to whole objects with the
// controller's --podautoscaler-full-resource flag, when every
// PodAutoscaler author may read every target and pod of their namespace.

// keptMetadata are the metadata fields of the view.
var keptMetadata = []string{"name", "namespace", "uid", "labels", "generation", "creationTimestamp"}

// view reduces an object to what methods receive by default.
func view(obj map[string]any) map[string]any {
	out := map[string]any{"apiVersion": obj["apiVersion"], "kind": obj["kind"]}
	if md, ok := obj["metadata"].(map[string]any); ok {
		m := map[string]any{}
		for _, k := range keptMetadata {
			if v, ok := md[k]; ok {
				m[k] = v
			}
		}
		out["metadata"] = m
	}
	if spec, ok := obj["spec"].(map[string]any); ok {
		s := map[string]any{}
		for _, k := range []string{"replicas", "selector"} {
			if v, ok := spec[k]; ok {
				s[k] = v
			}
		}
		out["spec"] = s
	}
	if st, ok := obj["status"]; ok {
		out["status"] = st
	}
	return out
}

// targetResource is the target as methods receive it.
func (r *Reconciler) targetResource(u *unstructured.Unstructured) any {
	if r.FullResource {
		return u.Object
	}
	return view(u.Object)
}

// podResource is a pod as methods receive it.
func (r *Reconciler) podResource(p *corev1.Pod) any {
	if r.FullResource {
		return p
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
	if err != nil {
		// A typed Pod always converts; if it ever did not, send its
		// identity only rather than the whole object.
		return map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": p.Name, "namespace": p.Namespace}}
	}
	if obj["apiVersion"] == nil {
		obj["apiVersion"], obj["kind"] = "v1", "Pod"
	}
	return view(obj)
}
