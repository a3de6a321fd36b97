package nodepool

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// CordonedAtAnnotation records when Swell cordoned a node (RFC 3339). It
// marks the node as Swell's to reopen or delete, and starts the empty-node
// expiry; it is set once and removed only when Swell uncordons the node.
const CordonedAtAnnotation = "swell.dev/cordoned-at"

// EmptySinceAnnotation records when Swell first saw a node it cordoned with
// no server pod left (RFC 3339). The empty-node expiry counts from it; being
// on the node, it survives a restart of Swell. It is removed when a server
// pod lands on the node again or Swell uncordons it.
const EmptySinceAnnotation = "swell.dev/empty-since"

// NodeStateOf turns a cached Node and the pods bound to it into the plain
// data Plan reads. Finished pods hold no resources and are skipped.
func NodeStateOf(node *corev1.Node, pods []*corev1.Pod, servers labels.Selector) NodeState {
	s := NodeState{
		Name:        node.Name,
		Ready:       isReady(node),
		Cordoned:    node.Spec.Unschedulable,
		Deleting:    node.DeletionTimestamp != nil,
		Allocatable: resourcesOf(node.Status.Allocatable),
		Requested:   policy.Resources{},
	}
	if at, ok := timeAnnotation(node, CordonedAtAnnotation); ok {
		s.SwellCordoned, s.CordonedAt = true, at
	}
	for _, p := range pods {
		if finished(p) {
			continue
		}
		addRequests(s.Requested, p)
		if servers.Matches(labels.Set(p.Labels)) {
			s.ServerPods++
		}
	}
	if at, ok := timeAnnotation(node, EmptySinceAnnotation); ok && emptyCandidate(s) {
		s.EmptySince = at
	}
	return s
}

// emptyCandidate is a node whose expiry clock runs: cordoned by Swell, not
// being deleted, and no server pod bound to it.
func emptyCandidate(s NodeState) bool {
	return s.SwellCordoned && s.Cordoned && !s.Deleting && s.ServerPods == 0
}

// EmptySinceChange is the write a pass makes to a node's empty-since
// annotation: Set starts the clock at Since, Clear stops it; neither when
// the annotation is already right.
type EmptySinceChange struct {
	Set, Clear bool
	Since      time.Time
}

// EmptySinceFor decides the node's expiry clock from its state and the
// annotation it carries: a node that just became empty starts at now, one
// that was empty keeps its recorded time (so a restart does not reset it),
// and a node that is no longer empty, or no longer Swell's cordon, loses
// it. An unreadable value restarts the clock rather than expire early.
func EmptySinceFor(node *corev1.Node, st NodeState, now time.Time) EmptySinceChange {
	_, present := node.Annotations[EmptySinceAnnotation]
	at, valid := timeAnnotation(node, EmptySinceAnnotation)
	switch {
	case st.Deleting:
		return EmptySinceChange{} // going anyway: no write
	case emptyCandidate(st) && valid:
		return EmptySinceChange{Since: at}
	case emptyCandidate(st):
		return EmptySinceChange{Set: true, Since: now}
	case present:
		return EmptySinceChange{Clear: true}
	}
	return EmptySinceChange{}
}

// timeAnnotation reads one of Swell's time annotations. An unreadable
// value is treated as absent: the node is then left alone rather than
// deleted early.
func timeAnnotation(node *corev1.Node, key string) (time.Time, bool) {
	v, ok := node.Annotations[key]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}

func isReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func finished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// addRequests adds a pod's effective requests, as the scheduler counts
// them: the sum of containers, at least the largest init container, plus
// the pod overhead.
func addRequests(into policy.Resources, p *corev1.Pod) {
	pod := policy.Resources{}
	for _, c := range p.Spec.Containers {
		addList(pod, c.Resources.Requests)
	}
	for _, c := range p.Spec.InitContainers {
		for name, q := range c.Resources.Requests {
			if v := quantityValue(string(name), q); v > pod[string(name)] {
				pod[string(name)] = v
			}
		}
	}
	addList(pod, p.Spec.Overhead)
	for k, v := range pod {
		into[k] += v
	}
}

func addList(into policy.Resources, list corev1.ResourceList) {
	for name, q := range list {
		into[string(name)] += quantityValue(string(name), q)
	}
}

func resourcesOf(list corev1.ResourceList) policy.Resources {
	out := make(policy.Resources, len(list))
	addList(out, list)
	return out
}

// templateOf picks the node shape for growth when the provider does not
// know it: the ready node that holds the most slots.
func templateOf(nodes []NodeState, slot policy.Resources) policy.Resources {
	var best policy.Resources
	bestSlots := int64(-1)
	for _, n := range nodes {
		if slots := policy.FreeSlots(policy.NodeCapacity{Allocatable: n.Allocatable}, slot); slots > bestSlots {
			best, bestSlots = n.Allocatable, slots
		}
	}
	return best
}
