package nodepool

import (
	corev1 "k8s.io/api/core/v1"
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
// nodes; when none is left to judge by (an empty pool), every pod counts,
// since the shape of the nodes the pool would add is not known.
func PendingDemand(pods []*corev1.Pod, pool []*corev1.Node) int {
	var shapes []*corev1.Node
	for _, n := range pool {
		if n.DeletionTimestamp == nil {
			shapes = append(shapes, n)
		}
	}
	if len(shapes) == 0 {
		return len(pods)
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
