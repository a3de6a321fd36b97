package nodepool

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
)

// lifecycleTaints are taints a pool node carries for a while and then
// loses, through Swell (a cordon) or its own start: they say nothing
// about whether a server could ever run there.
var lifecycleTaints = map[string]bool{
	corev1.TaintNodeUnschedulable: true,
	corev1.TaintNodeNotReady:      true,
	corev1.TaintNodeUnreachable:   true,
}

// PendingDemand counts the pending server pods the pool could serve: a
// pod whose node selector, required node affinity or missing tolerations
// rule out every pool node waits for some other node, so it is no demand
// on this pool and must not make it grow. pool is the pool's registered
// nodes. When none is left to judge by (an empty pool), a pod is judged
// against the labels the pool's nodes will carry, read from selector (the
// pool's node selector, see [CouldRunOnShape]): a pod asking for another
// value of one of those labels is no demand, while constraints on labels
// the selector does not fix still count, since such nodes are not known
// yet.
func PendingDemand(pods []*corev1.Pod, pool []*corev1.Node, selector labels.Selector) int {
	var shapes []*corev1.Node
	for _, n := range pool {
		if n.DeletionTimestamp == nil {
			shapes = append(shapes, n)
		}
	}
	if len(shapes) == 0 {
		return emptyPoolDemand(pods, selector)
	}
	count := 0
	for _, p := range pods {
		for _, n := range shapes {
			if CouldRunOn(p, n) {
				count++
				break
			}
		}
	}
	return count
}

// emptyPoolDemand counts the pods that could run on a node the selector
// would select.
func emptyPoolDemand(pods []*corev1.Pod, selector labels.Selector) int {
	shape := ShapeOf(selector)
	count := 0
	for _, p := range pods {
		if CouldRunOnShape(p, shape) {
			count++
		}
	}
	return count
}

// NodeShape is what is known of the labels of a pool's future nodes
// before any is registered: the labels its node selector pins to one
// value, and the keys it requires absent. Every other label is unknown.
type NodeShape struct {
	// Labels are the labels every pool node carries (key=value or
	// key in (value) in the selector).
	Labels labels.Set
	// Absent are keys no pool node carries (!key in the selector).
	Absent sets.Set[string]
}

// ShapeOf reads a node selector's requirements into a NodeShape. nil or
// an everything selector knows nothing.
func ShapeOf(selector labels.Selector) NodeShape {
	shape := NodeShape{Labels: labels.Set{}, Absent: sets.New[string]()}
	if selector == nil {
		return shape
	}
	reqs, _ := selector.Requirements()
	for _, r := range reqs {
		switch {
		case (r.Operator() == selection.Equals || r.Operator() == selection.DoubleEquals || r.Operator() == selection.In) && r.Values().Len() == 1:
			shape.Labels[r.Key()] = r.Values().UnsortedList()[0]
		case r.Operator() == selection.DoesNotExist:
			shape.Absent.Insert(r.Key())
		}
	}
	return shape
}

// known reports whether the shape fixes a label key (its value, or its
// absence).
func (s NodeShape) known(key string) bool {
	_, ok := s.Labels[key]
	return ok || s.Absent.Has(key)
}

// CouldRunOnShape reports whether pod's nodeSelector and required node
// affinity could match a node of the shape. Only requirements on keys the
// shape fixes are judged, with the scheduler's matching against a node
// carrying exactly the shape's labels; a requirement on any other key (or
// on a field such as metadata.name) might hold on a node not yet seen, so
// it does not rule the pod out. Taints are not known before a node
// exists, so they are not judged.
func CouldRunOnShape(pod *corev1.Pod, shape NodeShape) bool {
	judged := &corev1.Pod{Spec: corev1.PodSpec{NodeSelector: map[string]string{}}}
	for k, v := range pod.Spec.NodeSelector {
		if shape.known(k) {
			judged.Spec.NodeSelector[k] = v
		}
	}
	judged.Spec.Affinity = knownAffinity(pod.Spec.Affinity, shape)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: shape.Labels}}
	ok, err := nodeaffinity.GetRequiredNodeAffinity(judged).Match(node)
	return err == nil && ok
}

// knownAffinity keeps, of a pod's required node affinity, the expressions
// on keys the shape fixes. A term left with nothing to judge could hold,
// and the terms are alternatives, so then the whole affinity could hold:
// nil is returned.
func knownAffinity(a *corev1.Affinity, shape NodeShape) *corev1.Affinity {
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return nil
	}
	var terms []corev1.NodeSelectorTerm
	for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		var kept []corev1.NodeSelectorRequirement
		for _, r := range t.MatchExpressions {
			if shape.known(r.Key) {
				kept = append(kept, r)
			}
		}
		if len(kept) == 0 {
			return nil
		}
		terms = append(terms, corev1.NodeSelectorTerm{MatchExpressions: kept})
	}
	if len(terms) == 0 {
		return nil
	}
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
	}}
}

// CouldRunOn reports whether the scheduler's node-affinity and taint
// filters would let pod onto node once the node is Ready and uncordoned:
// the pod's nodeSelector and required node affinity match the node (the
// scheduler's own matching, from k8s.io/component-helpers), and its
// tolerations cover every NoSchedule and NoExecute taint other than the
// lifecycle ones. Resources are left out on purpose: a pod that fits on
// no node today is exactly the demand the pool grows for.
func CouldRunOn(pod *corev1.Pod, node *corev1.Node) bool {
	if ok, err := nodeaffinity.GetRequiredNodeAffinity(pod).Match(node); err != nil || !ok {
		return false
	}
	_, untolerated := corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), node.Spec.Taints, pod.Spec.Tolerations, blockingTaint, false)
	return !untolerated
}

// blockingTaint selects the taints that keep a pod off a node for good:
// NoSchedule or NoExecute, and not a lifecycle taint.
func blockingTaint(t *corev1.Taint) bool {
	if lifecycleTaints[t.Key] {
		return false
	}
	return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
}
