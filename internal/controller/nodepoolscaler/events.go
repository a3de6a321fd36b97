package nodepoolscaler

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
)

// teeRecorder sends every event the scaler emits on a Node to that Node,
// as `swell nodepool` does, and a copy to the NodePoolScaler, so
// `kubectl describe nodepoolscaler` lists each action the pool took.
type teeRecorder struct {
	inner record.EventRecorder
	owner runtime.Object
}

// Event records on the object and on the owner.
func (r *teeRecorder) Event(obj runtime.Object, eventtype, reason, message string) {
	r.inner.Event(obj, eventtype, reason, message)
	r.inner.Event(r.owner, eventtype, reason, about(obj)+message)
}

// Eventf records on the object and on the owner.
func (r *teeRecorder) Eventf(obj runtime.Object, eventtype, reason, messageFmt string, args ...any) {
	r.Event(obj, eventtype, reason, fmt.Sprintf(messageFmt, args...))
}

// AnnotatedEventf records on the object and on the owner.
func (r *teeRecorder) AnnotatedEventf(obj runtime.Object, annotations map[string]string, eventtype, reason, messageFmt string, args ...any) {
	msg := fmt.Sprintf(messageFmt, args...)
	r.inner.AnnotatedEventf(obj, annotations, eventtype, reason, "%s", msg)
	r.inner.AnnotatedEventf(r.owner, annotations, eventtype, reason, "%s", about(obj)+msg)
}

// about prefixes the owner's copy with the node it concerns.
func about(obj runtime.Object) string {
	m, err := meta.Accessor(obj)
	if err != nil {
		return ""
	}
	return "node " + m.GetName() + ": "
}
