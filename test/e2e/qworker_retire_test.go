package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/controller/qworker"
	"github.com/swell-autoscaler/swell/internal/procnode"
)

// retirePodLog records every event of the pods of one QWorker from a watch, so
// tests check what happened on the way, not only where the pool settled.
type retirePodLog struct {
	mu      sync.Mutex
	added   map[types.UID]time.Time
	marked  map[types.UID]bool
	stamped map[types.UID]string
	deleted map[types.UID]time.Time
}

// watchPods starts a pod watch of QWorker qw in ns until ctx ends.
func watchPods(ctx context.Context, t *testing.T, ns, qw string) *retirePodLog {
	t.Helper()
	w, err := env.Clientset.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: qworker.LabelQWorker + "=" + qw})
	if err != nil {
		t.Fatalf("watch pods: %v", err)
	}
	l := &retirePodLog{added: map[types.UID]time.Time{}, marked: map[types.UID]bool{}, stamped: map[types.UID]string{}, deleted: map[types.UID]time.Time{}}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			l.mu.Lock()
			if _, seen := l.added[pod.UID]; !seen {
				l.added[pod.UID] = time.Now()
			}
			if pod.Annotations[qworker.AnnotationRetire] == "true" {
				l.marked[pod.UID] = true
			}
			if at := pod.Annotations[qworker.AnnotationRetireAt]; at != "" {
				l.stamped[pod.UID] = at
			}
			if ev.Type == watch.Deleted {
				l.deleted[pod.UID] = time.Now()
			}
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *retirePodLog) counts() (added, marked, deleted int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.added), len(l.marked), len(l.deleted)
}

// addedSince counts pods first seen after t.
func (l *retirePodLog) addedSince(t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, at := range l.added {
		if at.After(t) {
			n++
		}
	}
	return n
}

// podPosts reads the API server's count of pod create requests (all
// namespaces, every response code) from its own /metrics.
func podPosts(ctx context.Context, t *testing.T) float64 {
	t.Helper()
	return sumAPIServer(ctx, t, "apiserver_request_total", map[string]string{"resource": "pods", "verb": "POST", "subresource": ""})
}

// readyCondition reads the QWorker's Ready condition (nil until written).
func readyCondition(ctx context.Context, t *testing.T, c client.Client, ns, name string) *metav1.Condition {
	t.Helper()
	return meta.FindStatusCondition(getQWorker(ctx, t, c, ns, name).Status.Conditions, qworker.ConditionReady)
}

// TestQWorkerRetireNeverStartedPodDeleted: pods that cannot be scheduled
// are deleted on scale-down at once — never marked, never left for the
// 10-minute retirement timeout (cooperative mode, no SDK to read a mark).
func TestQWorkerRetireNeverStartedPodDeleted(t *testing.T) {
	ctx, c, ns, rdb, queue := redisFixture(t, 3*time.Minute)
	qw := kwokQWorker(ns, "pending", queue, 0, 3, 1)
	qw.Spec.ScaleConfig.Retirement = nil // Cooperative: marks, 600 s timeout
	qw.Spec.PodSpec.NodeSelector = map[string]string{"swell.dev/no-such-node": "true"}
	log := watchPods(ctx, t, ns, "pending")
	if err := rdb.RPush(ctx, queue, "a", "b", "c").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, qw); err != nil {
		t.Fatalf("create QWorker: %v", err)
	}
	waitFor(ctx, t, "3 Pending pods", func() (bool, error) {
		pods, err := alivePods(ctx, ns, "pending")
		if err != nil || len(pods) != 3 {
			return false, err
		}
		for _, p := range pods {
			if p.Status.Phase != corev1.PodPending {
				return false, nil
			}
		}
		return true, nil
	})
	if err := rdb.Del(ctx, queue).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(ctx, t, "the Pending pods to be deleted", func() (bool, error) {
		pods, err := env.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: qworker.LabelQWorker + "=pending"})
		return err == nil && len(pods.Items) == 0, err
	})
	took := time.Since(start)
	added, marked, deleted := log.counts()
	t.Logf("scale-down to 0 of 3 never-started pods: %d created, %d marked, %d deleted, gone %.1fs after the queue emptied", added, marked, deleted, took.Seconds())
	if marked != 0 {
		t.Fatalf("%d never-started pods were marked for retirement; want them deleted without a mark", marked)
	}
	if took > 2*time.Minute {
		t.Fatalf("never-started pods took %s to go", took)
	}
}

// TestQWorkerRetireHandMarkTimesOut: a pod marked by hand (kubectl
// annotate swell.dev/retire=true, no retire-at) gets a retire-at and is
// deleted once the retirement timeout passes; a replacement takes its place.
func TestQWorkerRetireHandMarkTimesOut(t *testing.T) {
	ctx, c, ns, _, queue := redisFixture(t, 3*time.Minute)
	qw := kwokQWorker(ns, "handmark", queue, 1, 2, 1)
	qw.Spec.ScaleConfig.Retirement = &qv1.Retirement{TimeoutSeconds: ptr.To[int32](3)}
	log := watchPods(ctx, t, ns, "handmark")
	if err := c.Create(ctx, qw); err != nil {
		t.Fatalf("create QWorker: %v", err)
	}
	var pod corev1.Pod
	waitFor(ctx, t, "a ready pod", func() (bool, error) {
		pods, err := alivePods(ctx, ns, "handmark")
		if err != nil || len(pods) != 1 {
			return false, err
		}
		pod = pods[0]
		for _, cond := range pod.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	patch := []byte(`{"metadata":{"annotations":{"` + qworker.AnnotationRetire + `":"true"}}}`)
	if _, err := env.Clientset.CoreV1().Pods(ns).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("mark pod by hand: %v", err)
	}
	marked := time.Now()
	waitFor(ctx, t, "the hand-marked pod to be deleted", func() (bool, error) {
		_, err := env.Clientset.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		p, err := env.Clientset.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		return err == nil && p.DeletionTimestamp != nil, nil
	})
	took := time.Since(marked)
	log.mu.Lock()
	stamp := log.stamped[pod.UID]
	log.mu.Unlock()
	t.Logf("hand-marked pod: retire-at %q stamped, deleted %.1fs after the mark (timeout 3 s)", stamp, took.Seconds())
	if stamp == "" {
		t.Fatal("the hand-made mark never got a retire-at")
	}
	if took < 2*time.Second {
		t.Fatalf("pod deleted %s after the mark, before its 3 s timeout", took)
	}
	waitForRunningPods(ctx, t, ns, "handmark", 1)
}

// TestQWorkerRetireForegroundDeletion: deleting a busy QWorker with
// propagationPolicy Foreground completes — the controller creates no pod
// once the QWorker has a deletionTimestamp.
func TestQWorkerRetireForegroundDeletion(t *testing.T) {
	ctx, c, ns, rdb, queue := redisFixture(t, 3*time.Minute)
	if err := rdb.RPush(ctx, queue, "1", "2", "3", "4", "5", "6").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, kwokQWorker(ns, "busy", queue, 2, 6, 1)); err != nil {
		t.Fatalf("create QWorker: %v", err)
	}
	log := watchPods(ctx, t, ns, "busy")
	waitForRunningPods(ctx, t, ns, "busy", 6)
	deleting := time.Now()
	err := c.Delete(ctx, &qv1.QWorker{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "busy"}}, client.PropagationPolicy(metav1.DeletePropagationForeground))
	if err != nil {
		t.Fatalf("delete QWorker (foreground): %v", err)
	}
	waitFor(ctx, t, "the QWorker to be gone", func() (bool, error) {
		err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "busy"}, &qv1.QWorker{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	took := time.Since(deleting)
	created := log.addedSince(deleting)
	t.Logf("foreground deletion of a QWorker with 6 pods and a backlog of 6: done in %.1fs, %d pods created meanwhile", took.Seconds(), created)
	if created != 0 {
		t.Fatalf("%d pods created after the QWorker's deletion began", created)
	}
}

// TestQWorkerQuotaExhausted: with a ResourceQuota of 3 pods and
// maxReplicas 50, the quota error shows in the status and an event, the
// status patch works (messages fit), no more than 3 pods ever exist, and
// pod create requests back off (counted from the API server's /metrics).
func TestQWorkerQuotaExhausted(t *testing.T) {
	ctx, c, ns, rdb, queue := redisFixture(t, 4*time.Minute)
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pods"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("3")}}}
	if err := c.Create(ctx, quota); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the quota controller to fill in the quota's status", func() (bool, error) {
		q := &corev1.ResourceQuota{}
		err := c.Get(ctx, client.ObjectKeyFromObject(quota), q)
		return err == nil && q.Status.Hard != nil, err
	})
	tasks := make([]any, 50)
	for i := range tasks {
		tasks[i] = i
	}
	if err := rdb.RPush(ctx, queue, tasks...).Err(); err != nil {
		t.Fatal(err)
	}
	log := watchPods(ctx, t, ns, "quota")
	postsBefore := podPosts(ctx, t)
	if err := c.Create(ctx, kwokQWorker(ns, "quota", queue, 0, 50, 1)); err != nil {
		t.Fatalf("create QWorker: %v", err)
	}
	var cond *metav1.Condition
	waitFor(ctx, t, "the quota error in the Ready condition", func() (bool, error) {
		cond = readyCondition(ctx, t, c, ns, "quota")
		return cond != nil && cond.Reason == qworker.ReasonCreateBackOff && strings.Contains(cond.Message, "exceeded quota"), nil
	})
	assertEvent(ctx, t, ns, "quota", "CreatePodFailed")
	// A window of steady back-off: create requests counted by the API server.
	windowStart := podPosts(ctx, t)
	const window = 40 * time.Second
	time.Sleep(window)
	windowPosts := podPosts(ctx, t) - windowStart
	total := podPosts(ctx, t) - postsBefore
	added, _, _ := log.counts()
	t.Logf("quota 3, maxReplicas 50, backlog 50: %d pods created, %.0f pod create requests in all, %.0f in a %s window; Ready=%s %s: %.200s",
		added, total, windowPosts, window, cond.Status, cond.Reason, cond.Message)
	if added > 3 {
		t.Fatalf("%d pods created under a quota of 3", added)
	}
	// Back-off doubling from 1 s tries at most ~7 times in 40 s; without it,
	// each pass tried all 47 missing pods.
	if windowPosts > 10 {
		t.Fatalf("%.0f pod create requests in %s: creation does not back off", windowPosts, window)
	}
	if got := readyCondition(ctx, t, c, ns, "quota"); got.Message != cond.Message {
		t.Fatalf("the Ready message changed while backing off:\n%s\n%s", cond.Message, got.Message)
	}
}

// TestQWorkerRetireRejectedSpec: a pod spec the Pod API rejects (the CRD
// cannot check a container name) backs off per QWorker: few create
// requests over a window, a status message without generated pod names,
// written once.
func TestQWorkerRetireRejectedSpec(t *testing.T) {
	ctx, c, ns, _, queue := redisFixture(t, 3*time.Minute)
	qw := kwokQWorker(ns, "rejected", queue, 2, 2, 1)
	qw.Spec.PodSpec.Containers[0].Name = "Not_A_DNS_Label"
	before := podPosts(ctx, t)
	start := time.Now()
	if err := c.Create(ctx, qw); err != nil {
		t.Fatalf("create QWorker: %v", err)
	}
	var first *metav1.Condition
	waitFor(ctx, t, "the rejection in the Ready condition", func() (bool, error) {
		first = readyCondition(ctx, t, c, ns, "rejected")
		return first != nil && first.Reason == qworker.ReasonCreateBackOff, nil
	})
	const window = 40 * time.Second
	time.Sleep(window - time.Since(start))
	posts := podPosts(ctx, t) - before
	last := readyCondition(ctx, t, c, ns, "rejected")
	t.Logf("rejected pod spec: %.0f pod create requests in %s; Ready=%s %s: %s", posts, time.Since(start).Round(time.Second), last.Status, last.Reason, last.Message)
	if posts > 10 {
		t.Fatalf("%.0f create requests in %s: no back-off (a hot loop makes ~2 a second)", posts, window)
	}
	if strings.Contains(last.Message, "rejected-") && !strings.Contains(last.Message, "rejected-*") {
		t.Fatalf("status message carries a generated pod name: %s", last.Message)
	}
	if last.Message != first.Message || !last.LastTransitionTime.Equal(&first.LastTransitionTime) {
		t.Fatalf("Ready condition changed while backing off:\n%v\n%v", first, last)
	}
}

// TestQWorkerPodMetadataAndLabelValidation: spec.podMetadata reaches the
// pods (Swell's labels win), and the CRD refuses names and label values
// that could never be pod labels, naming the field.
func TestQWorkerPodMetadataAndLabelValidation(t *testing.T) {
	ctx, c, ns, _, queue := redisFixture(t, 2*time.Minute)
	long := kwokQWorker(ns, strings.Repeat("q", 64), queue, 0, 1, 1)
	if err := c.Create(ctx, long); err == nil || !strings.Contains(err.Error(), "metadata.name") {
		t.Fatalf("a 64-character QWorker name: got %v, want an error naming metadata.name", err)
	}
	badLabel := kwokQWorker(ns, "badlabel", queue, 0, 1, 1)
	badLabel.Spec.PodMetadata = &qv1.PodMetadata{Labels: map[string]qv1.LabelValue{"team": qv1.LabelValue(strings.Repeat("v", 64))}}
	if err := c.Create(ctx, badLabel); err == nil || !strings.Contains(err.Error(), "spec.podMetadata.labels") {
		t.Fatalf("a 64-character label value: got %v, want an error naming spec.podMetadata.labels", err)
	}
	qw := kwokQWorker(ns, "meta", queue, 1, 1, 1)
	qw.Spec.PodMetadata = &qv1.PodMetadata{
		Labels:      map[string]qv1.LabelValue{"team": "payments", qworker.LabelQWorker: "spoofed"},
		Annotations: map[string]string{"cluster-autoscaler.kubernetes.io/safe-to-evict": "false", qworker.AnnotationRetire: "true"},
	}
	if err := c.Create(ctx, qw); err != nil {
		t.Fatalf("create QWorker: %v", err)
	}
	pods := waitForRunningPods(ctx, t, ns, "meta", 1)
	p := pods[0]
	if p.Labels["team"] != "payments" || p.Labels[qworker.LabelQWorker] != "meta" {
		t.Fatalf("pod labels %v: want team=payments and Swell's own qworker label", p.Labels)
	}
	if p.Annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] != "false" || p.Annotations[qworker.AnnotationRetire] != "" {
		t.Fatalf("pod annotations %v: want safe-to-evict, and no preset retire mark", p.Annotations)
	}
	got := getQWorker(ctx, t, c, ns, "meta")
	plain, _ := qworker.PodSpecHash(&got.Spec.PodSpec)
	if got.Status.CurrentPodSpecHash == plain || got.Status.CurrentPodSpecHash == "" {
		t.Fatalf("status hash %q: want one that includes podMetadata (not the podSpec's alone, %s)", got.Status.CurrentPodSpecHash, plain)
	}
	t.Logf("podMetadata: pod %s carries team=%s, hash %s…", p.Name, p.Labels["team"], got.Status.CurrentPodSpecHash[:12])
}

// TestQWorkerRetireOwnerRefPermission proves the test API server enforces
// OwnerReferencesPermissionEnforcement (as OpenShift does): a user who may
// create pods but not update qworkers/finalizers cannot create a pod that
// blocks its QWorker's deletion, while the controller's own identity
// (config/rbac/role.yaml, as the suite's controller runs) can.
func TestQWorkerRetireOwnerRefPermission(t *testing.T) {
	ctx, c, ns, _, queue := redisFixture(t, 2*time.Minute)
	qw := kwokQWorker(ns, "owner", queue, 0, 1, 1)
	if err := c.Create(ctx, qw); err != nil {
		t.Fatalf("create QWorker: %v", err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pods-only"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create", "get"}}}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pods-only"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pods-only"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: "pods-only-user"}}}
	if err := c.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	owned := func(name string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, OwnerReferences: []metav1.OwnerReference{
				*metav1.NewControllerRef(qw, qv1.GroupVersion.WithKind("QWorker"))}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "registry.invalid/w:1"}}},
		}
	}
	as := func(user string, groups ...string) kubernetes.Interface {
		cfg := rest.CopyConfig(env.RESTConfig)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append(groups, "system:authenticated")}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	var err error
	waitFor(ctx, t, "the pods-only role to apply", func() (bool, error) {
		_, err = as("pods-only-user").CoreV1().Pods(ns).Create(ctx, owned("by-user"), metav1.CreateOptions{})
		return apierrors.IsForbidden(err) && strings.Contains(err.Error(), "blockOwnerDeletion"), nil
	})
	t.Logf("a user without qworkers/finalizers: %v", err)
	ctrlClient := as(controllerServiceAccount, "system:serviceaccounts", "system:serviceaccounts:swell-system")
	if _, err := ctrlClient.CoreV1().Pods(ns).Create(ctx, owned("by-controller"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("the controller's identity could not create an owned pod: %v", err)
	}
}

// TestQWorkerRetireCrashLoop: a worker whose container exits 3 at start,
// with restartPolicy Never, on the process node (real processes): failed
// pods are replaced with a crash-loop back-off, and the Ready condition
// says so — instead of a new pod every second.
func TestQWorkerRetireCrashLoop(t *testing.T) {
	ctx, c, ns, _, queue := redisFixture(t, 3*time.Minute)
	qw := kwokQWorker(ns, "crash", queue, 1, 1, 1)
	qw.Spec.PodSpec = corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever,
		NodeSelector:  map[string]string{procnode.Label: "true"},
		Tolerations:   []corev1.Toleration{{Key: procnode.Taint, Operator: corev1.TolerationOpExists}},
		Containers:    []corev1.Container{{Name: "worker", Image: "local", Command: []string{"/bin/sh", "-c", "exit 3"}}},
	}
	log := watchPods(ctx, t, ns, "crash")
	start := time.Now()
	if err := c.Create(ctx, qw); err != nil {
		t.Fatalf("create QWorker: %v", err)
	}
	var cond *metav1.Condition
	waitFor(ctx, t, "CrashLoopBackOff in the Ready condition", func() (bool, error) {
		cond = readyCondition(ctx, t, c, ns, "crash")
		return cond != nil && cond.Reason == qworker.ReasonCrashLoopBackOff, nil
	})
	const window = 60 * time.Second
	time.Sleep(window - time.Since(start))
	added, _, _ := log.counts()
	t.Logf("a worker exiting 3 at start: %d pods in %s; Ready=%s %s: %s", added, time.Since(start).Round(time.Second), cond.Status, cond.Reason, cond.Message)
	if !strings.Contains(cond.Message, "exited with code 3") || strings.Contains(cond.Message, "crash-") {
		t.Fatalf("condition message %q: want the exit code and no pod name", cond.Message)
	}
	// Replaced at once, then after 10, 20, 40 s: 4-5 pods in a minute
	// (without the back-off, one about every second).
	if added > 8 {
		t.Fatalf("%d pods created in %s: failed pods are replaced without back-off", added, window)
	}
}
