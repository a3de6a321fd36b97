package qworker

import (
	"fmt"
	"regexp"
	"sync"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Bounds on how fast a QWorker's pods are created when creation keeps
// failing, and how many one pass creates.
const (
	// createBackoffBase and createBackoffMax bound the wait after pod
	// creations the API refused (a rejected pod spec, an exhausted
	// ResourceQuota): it doubles per failed pass, per QWorker.
	createBackoffBase = time.Second
	createBackoffMax  = 2 * time.Minute
	// crashBackoffBase and crashBackoffMax bound the wait before replacing
	// worker pods that keep failing at start (restartPolicy Never, where the
	// kubelet's own CrashLoopBackOff never applies): as the kubelet, 10 s
	// doubling to 5 min.
	crashBackoffBase = 10 * time.Second
	crashBackoffMax  = 5 * time.Minute
	// maxCreatesPerPass caps the pods one pass creates (the ReplicaSet
	// controller's burstReplicas plays this role); the next pass, woken by
	// the creations, goes on.
	maxCreatesPerPass = 100
	// maxMessageBytes is the API server's limit on a condition message.
	maxMessageBytes = 32768
)

// Reasons of the Ready condition while creation is held.
const (
	// ReasonCreateBackOff: pod creations failed; the next try waits.
	ReasonCreateBackOff = "CreateBackOff"
	// ReasonCrashLoopBackOff: worker pods keep failing at start; their
	// replacements wait.
	ReasonCrashLoopBackOff = "CrashLoopBackOff"
)

// backoffDelay is the wait after failures consecutive failures: base
// doubled per failure after the first, capped at ceiling.
func backoffDelay(failures int, base, ceiling time.Duration) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := base
	for i := 1; i < failures && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}

// slowStartBatches splits n creations (capped at limit) into batches of
// 1, 2, 4, …, as the ReplicaSet controller does: a batch is tried only
// when the one before it fully succeeded, so a quota or a rejected spec
// costs a handful of failed requests, not n.
func slowStartBatches(n, limit int) []int {
	n = min(n, limit)
	var out []int
	for size := 1; n > 0; size *= 2 {
		b := min(size, n)
		out = append(out, b)
		n -= b
	}
	return out
}

// heldError says pod creation is being held back, and why, in words that
// stay the same from pass to pass (so the status is not rewritten).
type heldError struct {
	Reason  string
	Message string
	// Wait is how long until creation may be tried again.
	Wait time.Duration
}

func (e *heldError) Error() string { return e.Message }

// hold is one reason to hold creation back: failures in a row, until when,
// and the spec hash they were seen with (a new spec starts afresh).
type hold struct {
	failures int
	until    time.Time
	message  string
	hash     string
}

// holds are the per-QWorker creation back-offs.
type holds struct {
	create hold
	crash  hold
	// failed are the UIDs of failed pods already counted.
	failed map[types.UID]struct{}
}

// backoffs holds every QWorker's creation back-offs; the zero value is
// ready to use.
type backoffs struct {
	mu   sync.Mutex
	byQW map[types.NamespacedName]*holds
}

func (b *backoffs) get(key types.NamespacedName) *holds {
	if b.byQW == nil {
		b.byQW = map[types.NamespacedName]*holds{}
	}
	h := b.byQW[key]
	if h == nil {
		h = &holds{failed: map[types.UID]struct{}{}}
		b.byQW[key] = h
	}
	return h
}

// createFailed records a pass whose creations failed with message and
// returns what holds creation back now.
func (b *backoffs) createFailed(key types.NamespacedName, now time.Time, hash, message string) *heldError {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.get(key)
	if h.create.hash != hash {
		h.create = hold{hash: hash}
	}
	h.create.failures++
	d := backoffDelay(h.create.failures, createBackoffBase, createBackoffMax)
	h.create.until = now.Add(d)
	h.create.message = fmt.Sprintf("creating worker pods failed: %s; retrying with back-off (up to %s)", message, createBackoffMax)
	return &heldError{Reason: ReasonCreateBackOff, Message: h.create.message, Wait: d}
}

// createSucceeded clears the creation back-off after a pass whose
// creations all worked.
func (b *backoffs) createSucceeded(key types.NamespacedName) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h := b.byQW[key]; h != nil {
		h.create = hold{}
	}
}

// observeCrashes counts worker pods that failed at start since the last
// pass (each once, by UID) and clears the count when workersUp says
// workers do start and stay up.
func (b *backoffs) observeCrashes(key types.NamespacedName, now time.Time, hash string, pods []*corev1.Pod, workersUp bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.get(key)
	if h.crash.hash != hash {
		h.crash = hold{hash: hash}
	}
	seen := make(map[types.UID]struct{}, len(pods))
	var fresh []*corev1.Pod
	for _, p := range pods {
		if !crashed(p) {
			continue
		}
		seen[p.UID] = struct{}{}
		if _, ok := h.failed[p.UID]; !ok {
			fresh = append(fresh, p)
		}
	}
	h.failed = seen
	if len(fresh) == 0 {
		if workersUp {
			h.crash = hold{hash: hash}
		}
		return
	}
	h.crash.failures += len(fresh)
	// The first failure is replaced at once; from the second in a row on,
	// replacements wait as a crash-looping container's restarts would.
	d := backoffDelay(h.crash.failures-1, crashBackoffBase, crashBackoffMax)
	h.crash.until = now.Add(d)
	h.crash.message = fmt.Sprintf("%d worker pods in a row failed (last: %s); replacements back off %s (doubling up to %s)",
		h.crash.failures, failureSummary(fresh[len(fresh)-1]), d, crashBackoffMax)
}

// held says whether creation is held back at now, and why.
func (b *backoffs) held(key types.NamespacedName, now time.Time) *heldError {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.byQW[key]
	if h == nil {
		return nil
	}
	c, r := h.create.until.Sub(now), h.crash.until.Sub(now)
	switch {
	case r > 0 && r >= c:
		return &heldError{Reason: ReasonCrashLoopBackOff, Message: h.crash.message, Wait: r}
	case c > 0:
		return &heldError{Reason: ReasonCreateBackOff, Message: h.create.message, Wait: c}
	}
	return nil
}

// forget drops a deleted QWorker's back-offs.
func (b *backoffs) forget(key types.NamespacedName) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.byQW, key)
}

// workerStayedUp reports whether some worker has been Ready for at least
// crashBackoffBase: workers do start and stay up. A worker Ready for a
// moment before it fails (no readiness probe) does not count.
func workerStayedUp(pods map[string]*corev1.Pod, now time.Time) bool {
	for _, p := range pods {
		if p.DeletionTimestamp != nil || podFinished(p) {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && now.Sub(c.LastTransitionTime.Time) >= crashBackoffBase {
				return true
			}
		}
	}
	return false
}

// crashed reports a pod whose containers failed (phase Failed) by
// themselves: evictions, node shutdowns and deadlines set a pod reason
// and are not the worker's fault.
func crashed(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodFailed && pod.Status.Reason == ""
}

// failureSummary says how a failed pod's first failed container ended,
// without the pod's generated name (so the message is the same for every
// pod failing the same way).
func failureSummary(pod *corev1.Pod) string {
	all := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, c := range all {
		t := c.State.Terminated
		if t == nil || t.ExitCode == 0 {
			continue
		}
		if t.Reason != "" {
			return fmt.Sprintf("container %s exited with code %d, %s", c.Name, t.ExitCode, t.Reason)
		}
		return fmt.Sprintf("container %s exited with code %d", c.Name, t.ExitCode)
	}
	if pod.Status.Message != "" {
		return pod.Status.Message
	}
	return "pod phase Failed"
}

// stableMessage keeps generated pod names (<qworker>-<5 random>) out of an
// API error, so the same failure reads the same on every try.
func stableMessage(qworker string, err error) string {
	re := regexp.MustCompile(regexp.QuoteMeta(qworker) + `-[a-z0-9]{5}\b`)
	return re.ReplaceAllString(err.Error(), qworker+"-*")
}

// fitMessage cuts s to the API server's limit on a condition message,
// on a rune boundary, saying that it was cut.
func fitMessage(s string) string {
	if len(s) <= maxMessageBytes {
		return s
	}
	const cut = " … (truncated)"
	n := maxMessageBytes - len(cut)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + cut
}
