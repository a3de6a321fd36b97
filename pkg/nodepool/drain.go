package nodepool

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Annotations by which a pod says it must not be disrupted. Swell honours
// the Cluster Autoscaler's and Karpenter's (current and legacy), so a
// workload annotated for either autoscaler is protected the same way here.
const (
	SafeToEvictAnnotation  = "cluster-autoscaler.kubernetes.io/safe-to-evict"
	DoNotDisruptAnnotation = "karpenter.sh/do-not-disrupt"
	// DoNotEvictAnnotation is Karpenter's name for do-not-disrupt before
	// v0.32; workloads written for older Karpenter releases still carry it.
	DoNotEvictAnnotation = "karpenter.sh/do-not-evict"
)

// mirrorPodAnnotation marks a static pod's mirror: the kubelet owns it and
// the API cannot evict it; it goes with its node.
const mirrorPodAnnotation = corev1.MirrorPodAnnotationKey

// Blocker is one pod that keeps a node from being deleted, and why.
type Blocker struct {
	// Pod is namespace/name.
	Pod    string
	Reason string
}

func (b Blocker) String() string { return b.Pod + ": " + b.Reason }

// DrainVerdict is what stands between a node and its deletion, from the
// pods bound to it. A node may be deleted only when Blockers, Evict and
// Terminating are all empty.
type DrainVerdict struct {
	// Blockers are pods Swell will not evict: server pods (they end on
	// their own) and pods annotated not to be disrupted. Any blocker
	// leaves the node alone.
	Blockers []Blocker
	// Evict are pods to move through the Eviction API (so
	// PodDisruptionBudgets apply) before the node can go.
	Evict []*corev1.Pod
	// Terminating are pods already being deleted: the node waits for them.
	Terminating []string
}

// Clean reports that nothing but DaemonSet, mirror and finished pods is
// left: the node may be deleted.
func (v DrainVerdict) Clean() bool {
	return len(v.Blockers) == 0 && len(v.Evict) == 0 && len(v.Terminating) == 0
}

// AssessDrain decides, for the pods bound to a node, which block its
// deletion, which must be evicted first, and which may go down with the
// node (DaemonSet pods, which their controller would recreate there anyway;
// mirror pods, which the kubelet owns; finished pods, which hold nothing).
// It is pure, so every rule is a row of a table test.
func AssessDrain(pods []*corev1.Pod, servers labels.Selector) DrainVerdict {
	var v DrainVerdict
	for _, p := range pods {
		if finished(p) || daemonSetPod(p) || mirrorPod(p) {
			continue
		}
		key := p.Namespace + "/" + p.Name
		if reason, blocks := blocksDeletion(p, servers); blocks {
			v.Blockers = append(v.Blockers, Blocker{Pod: key, Reason: reason})
			continue
		}
		if p.DeletionTimestamp != nil {
			v.Terminating = append(v.Terminating, key)
			continue
		}
		v.Evict = append(v.Evict, p)
	}
	sort.Slice(v.Blockers, func(i, j int) bool { return v.Blockers[i].Pod < v.Blockers[j].Pod })
	sort.Strings(v.Terminating)
	sort.Slice(v.Evict, func(i, j int) bool {
		return v.Evict[i].Namespace+"/"+v.Evict[i].Name < v.Evict[j].Namespace+"/"+v.Evict[j].Name
	})
	return v
}

// blocksDeletion says whether a pod that is neither finished, DaemonSet nor
// mirror forbids deleting its node, and why.
func blocksDeletion(p *corev1.Pod, servers labels.Selector) (string, bool) {
	switch {
	case servers.Matches(labels.Set(p.Labels)):
		return "server pod (servers are never evicted; the node waits until it ends)", true
	case p.Annotations[SafeToEvictAnnotation] == "false":
		return fmt.Sprintf("annotated %s=false", SafeToEvictAnnotation), true
	case p.Annotations[DoNotDisruptAnnotation] == "true":
		return fmt.Sprintf("annotated %s=true", DoNotDisruptAnnotation), true
	case p.Annotations[DoNotEvictAnnotation] == "true":
		return fmt.Sprintf("annotated %s=true", DoNotEvictAnnotation), true
	}
	return "", false
}

// daemonSetPod reports a pod controlled by a DaemonSet.
func daemonSetPod(p *corev1.Pod) bool {
	for _, ref := range p.OwnerReferences {
		if ref.Controller != nil && *ref.Controller && ref.Kind == "DaemonSet" {
			return true
		}
	}
	return false
}

func mirrorPod(p *corev1.Pod) bool {
	_, ok := p.Annotations[mirrorPodAnnotation]
	return ok
}
