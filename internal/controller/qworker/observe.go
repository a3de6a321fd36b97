package qworker

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// poolView is the controller's reading of a QWorker's pods.
type poolView struct {
	// workers are the pods the pool planner sees (not finished).
	workers []policy.WorkerPod
	byName  map[string]*corev1.Pod
	// finished pods (Succeeded/Failed) are removed and, if needed, replaced.
	finished []*corev1.Pod
	// overdue are retiring pods past the retirement timeout, and retiring
	// pods that never started (nobody there to read the mark).
	overdue []*corev1.Pod
	// unstamped are retiring pods without a readable retire-at (marked by
	// hand: kubectl annotate swell.dev/retire=true); they get one, so the
	// retirement timeout runs for them too.
	unstamped []*corev1.Pod
	// alive counts pods not finished and not terminating, retiring included:
	// QScaler's currentReplicas, which its workers compare with desired.
	alive int32
	ready int32
}

// observe classifies pods for planning.
func observe(pods []corev1.Pod, now time.Time, retireTimeout time.Duration) poolView {
	v := poolView{byName: map[string]*corev1.Pod{}}
	for i := range pods {
		pod := &pods[i]
		v.byName[pod.Name] = pod
		if podFinished(pod) {
			v.finished = append(v.finished, pod)
			continue
		}
		at, retiring, _ := retireRequestedAt(pod)
		terminating := pod.DeletionTimestamp != nil
		switch {
		case !retiring || terminating:
		case neverStarted(pod) || (!at.IsZero() && now.Sub(at) > retireTimeout):
			v.overdue = append(v.overdue, pod)
		case at.IsZero():
			v.unstamped = append(v.unstamped, pod)
		}
		ready := podReady(pod)
		if !terminating {
			v.alive++
			if ready && !retiring {
				v.ready++
			}
		}
		v.workers = append(v.workers, policy.WorkerPod{
			Name: pod.Name, Hash: podHash(pod), Ready: ready,
			Retiring: retiring, Terminating: terminating, Created: pod.CreationTimestamp.Time,
			NeverStarted: neverStarted(pod),
		})
	}
	return v
}
