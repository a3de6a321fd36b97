package qworker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/source/stats"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// podAt builds a pod in phase with a Ready condition (ready, changed at
// readyAt) and one container running since started (zero: not running).
func podAt(name string, phase corev1.PodPhase, ready bool, readyAt, started time.Time) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name)}, Status: corev1.PodStatus{Phase: phase}}
	if !readyAt.IsZero() {
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.NewTime(readyAt)}}
	}
	cs := corev1.ContainerStatus{Name: "worker"}
	if started.IsZero() {
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}
	} else {
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{cs}
	return p
}

func TestNeverStarted(t *testing.T) {
	deleting := podAt("d", corev1.PodPending, false, t0, time.Time{})
	deleting.DeletionTimestamp = &metav1.Time{Time: t0}
	cases := []struct {
		name string
		pod  corev1.Pod
		want bool
	}{
		{"pending, unschedulable", podAt("p", corev1.PodPending, false, time.Time{}, time.Time{}), true},
		{"no phase yet", podAt("n", "", false, time.Time{}, time.Time{}), true},
		{"running phase, container waiting (image pull, crash loop)", podAt("w", corev1.PodRunning, false, t0, time.Time{}), true},
		{"running, not ready since before it started", podAt("r", corev1.PodRunning, false, t0, t0.Add(time.Second)), true},
		{"running, not ready since its start's second", podAt("s", corev1.PodRunning, false, t0, t0), true},
		{"running, was ready, now not ready (busy worker)", podAt("b", corev1.PodRunning, false, t0.Add(time.Minute), t0), false},
		{"ready", podAt("y", corev1.PodRunning, true, t0, t0), false},
		{"terminating", deleting, false},
		{"failed", podAt("f", corev1.PodFailed, false, t0, time.Time{}), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := neverStarted(&c.pod); got != c.want {
				t.Fatalf("neverStarted = %v, want %v", got, c.want)
			}
		})
	}
}

func TestObserveRetireMarks(t *testing.T) {
	mark := func(p corev1.Pod, at string) corev1.Pod {
		p.Annotations = map[string]string{AnnotationRetire: "true"}
		if at != "" {
			p.Annotations[AnnotationRetireAt] = at
		}
		return p
	}
	running := func(name string) corev1.Pod { return podAt(name, corev1.PodRunning, true, t0, t0) }
	now := t0.Add(time.Hour)
	cases := []struct {
		name               string
		pod                corev1.Pod
		overdue, unstamped bool
	}{
		{"unmarked", running("a"), false, false},
		{"hand-made mark without retire-at", mark(running("b"), ""), false, true},
		{"unreadable retire-at", mark(running("c"), "yesterday"), false, true},
		{"fresh mark", mark(running("d"), now.Add(-time.Minute).Format(time.RFC3339)), false, false},
		{"mark past the timeout", mark(running("e"), now.Add(-11*time.Minute).Format(time.RFC3339)), true, false},
		{"marked but never started", mark(podAt("f", corev1.PodPending, false, t0, time.Time{}), now.Format(time.RFC3339)), true, false},
		{"hand-marked and never started", mark(podAt("g", corev1.PodPending, false, t0, time.Time{}), ""), true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := observe([]corev1.Pod{c.pod}, now, 10*time.Minute)
			if got := len(v.overdue) == 1; got != c.overdue {
				t.Errorf("overdue = %v, want %v", got, c.overdue)
			}
			if got := len(v.unstamped) == 1; got != c.unstamped {
				t.Errorf("unstamped = %v, want %v", got, c.unstamped)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	cases := []struct {
		failures int
		want     time.Duration
	}{
		{0, 0}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {8, 128 * time.Second}, {9, 256 * time.Second}, {10, 5 * time.Minute}, {100, 5 * time.Minute},
	}
	for _, c := range cases {
		if got := backoffDelay(c.failures, time.Second, 5*time.Minute); got != c.want {
			t.Errorf("backoffDelay(%d) = %s, want %s", c.failures, got, c.want)
		}
	}
}

func TestSlowStartBatches(t *testing.T) {
	cases := []struct {
		n, limit int
		want     []int
	}{
		{0, 100, nil},
		{1, 100, []int{1}},
		{3, 100, []int{1, 2}},
		{10, 100, []int{1, 2, 4, 3}},
		{500, 100, []int{1, 2, 4, 8, 16, 32, 37}},
	}
	for _, c := range cases {
		got := slowStartBatches(c.n, c.limit)
		if len(got) != len(c.want) {
			t.Fatalf("slowStartBatches(%d, %d) = %v, want %v", c.n, c.limit, got, c.want)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Fatalf("slowStartBatches(%d, %d) = %v, want %v", c.n, c.limit, got, c.want)
			}
		}
	}
}

func TestStableAndFitMessage(t *testing.T) {
	err := errors.New(`Pod "workers-x7k2p" is invalid: spec.containers[0].image: Required value; Pod "workers-abcde" too`)
	if got, want := stableMessage("workers", err), `Pod "workers-*" is invalid: spec.containers[0].image: Required value; Pod "workers-*" too`; got != want {
		t.Fatalf("stableMessage = %q, want %q", got, want)
	}
	long := strings.Repeat("é", maxMessageBytes)
	got := fitMessage(long)
	if len(got) > maxMessageBytes || !strings.HasSuffix(got, "(truncated)") || !strings.HasPrefix(got, "éé") {
		t.Fatalf("fitMessage: %d bytes, suffix %q", len(got), got[len(got)-20:])
	}
	if fitMessage("short") != "short" {
		t.Fatal("fitMessage changed a short message")
	}
}

func TestBackoffsCreate(t *testing.T) {
	var b backoffs
	key := types.NamespacedName{Namespace: "ns", Name: "w"}
	if b.held(key, t0) != nil {
		t.Fatal("held before any failure")
	}
	h := b.createFailed(key, t0, "h1", "quota exceeded")
	if h.Wait != time.Second || h.Reason != ReasonCreateBackOff {
		t.Fatalf("first failure: %+v", h)
	}
	if got := b.held(key, t0.Add(500*time.Millisecond)); got == nil || got.Message != h.Message {
		t.Fatalf("not held half-way through the back-off: %+v", got)
	}
	if got := b.held(key, t0.Add(time.Second)); got != nil {
		t.Fatalf("held after the back-off: %+v", got)
	}
	if h2 := b.createFailed(key, t0.Add(time.Second), "h1", "quota exceeded"); h2.Wait != 2*time.Second || h2.Message != h.Message {
		t.Fatalf("second failure: %+v (message must not change: %q)", h2, h.Message)
	}
	if h3 := b.createFailed(key, t0.Add(3*time.Second), "h2", "quota exceeded"); h3.Wait != time.Second {
		t.Fatalf("a new spec must start the back-off afresh: %+v", h3)
	}
	b.createSucceeded(key)
	if b.held(key, t0.Add(3*time.Second)) != nil {
		t.Fatal("held after a successful pass")
	}
}

func failedPod(name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name)}, Status: corev1.PodStatus{
		Phase: corev1.PodFailed,
		ContainerStatuses: []corev1.ContainerStatus{{Name: "worker", State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: 3, Reason: "Error"}}}},
	}}
}

func TestBackoffsCrashLoop(t *testing.T) {
	var b backoffs
	key := types.NamespacedName{Namespace: "ns", Name: "w"}
	evicted := failedPod("evicted")
	evicted.Status.Reason = "Evicted"
	b.observeCrashes(key, t0, "h", []*corev1.Pod{evicted}, false)
	if b.held(key, t0) != nil {
		t.Fatal("an eviction counted as a crash")
	}
	b.observeCrashes(key, t0, "h", []*corev1.Pod{failedPod("a")}, false)
	if b.held(key, t0) != nil {
		t.Fatal("the first failed pod must be replaced at once")
	}
	// The same failed pod seen again (deletion not in the cache yet) is
	// not a new failure.
	b.observeCrashes(key, t0.Add(time.Second), "h", []*corev1.Pod{failedPod("a")}, false)
	if b.held(key, t0.Add(time.Second)) != nil {
		t.Fatal("a failed pod was counted twice")
	}
	b.observeCrashes(key, t0.Add(2*time.Second), "h", []*corev1.Pod{failedPod("b")}, false)
	h := b.held(key, t0.Add(2*time.Second))
	if h == nil || h.Reason != ReasonCrashLoopBackOff || h.Wait != crashBackoffBase {
		t.Fatalf("second failure in a row: %+v, want CrashLoopBackOff for %s", h, crashBackoffBase)
	}
	if !strings.Contains(h.Message, "container worker exited with code 3, Error") || strings.Contains(h.Message, `"b"`) {
		t.Fatalf("message %q: want the exit code, no pod name", h.Message)
	}
	b.observeCrashes(key, t0.Add(12*time.Second), "h", []*corev1.Pod{failedPod("c")}, false)
	if h := b.held(key, t0.Add(12*time.Second)); h == nil || h.Wait != 2*crashBackoffBase {
		t.Fatalf("third failure in a row: %+v, want %s", h, 2*crashBackoffBase)
	}
	b.observeCrashes(key, t0.Add(40*time.Second), "h", nil, true)
	b.observeCrashes(key, t0.Add(41*time.Second), "h", []*corev1.Pod{failedPod("d")}, false)
	if h := b.held(key, t0.Add(41*time.Second)); h != nil {
		t.Fatalf("a ready worker must reset the count: %+v", h)
	}
}

func TestWorkerStayedUp(t *testing.T) {
	now := t0.Add(time.Minute)
	cases := []struct {
		name string
		pod  corev1.Pod
		want bool
	}{
		{"ready for a minute", podAt("a", corev1.PodRunning, true, t0, t0), true},
		{"ready for a moment (fails at start without a probe)", podAt("b", corev1.PodRunning, true, now.Add(-time.Second), now.Add(-time.Second)), false},
		{"not ready", podAt("c", corev1.PodRunning, false, t0, t0), false},
		{"failed", podAt("d", corev1.PodFailed, true, t0, t0), false},
	}
	for _, c := range cases {
		if got := workerStayedUp(map[string]*corev1.Pod{c.pod.Name: &c.pod}, now); got != c.want {
			t.Errorf("%s: workerStayedUp = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestWorkerHash(t *testing.T) {
	spec := &corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "i"}}}
	plain, _ := PodSpecHash(spec)
	cases := []struct {
		name     string
		meta     *qv1.PodMetadata
		samePlan bool
	}{
		{"no podMetadata: QScaler's hash", nil, true},
		{"empty podMetadata: QScaler's hash", &qv1.PodMetadata{}, true},
		{"labels", &qv1.PodMetadata{Labels: map[string]qv1.LabelValue{"team": "a"}}, false},
		{"annotations", &qv1.PodMetadata{Annotations: map[string]string{"x": "y"}}, false},
	}
	seen := map[string]string{}
	for _, c := range cases {
		got, err := workerHash(spec, c.meta)
		if err != nil {
			t.Fatal(err)
		}
		if (got == plain) != c.samePlan {
			t.Errorf("%s: hash %s, QScaler's %s", c.name, got, plain)
		}
		if !c.samePlan {
			if prev, dup := seen[got]; dup {
				t.Errorf("%s: same hash as %s", c.name, prev)
			}
			seen[got] = c.name
		}
	}
}

func TestNewWorkerPodPodMetadata(t *testing.T) {
	m := &qv1.PodMetadata{
		Labels: map[string]qv1.LabelValue{"team": "a", LabelQWorker: "other"},
		Annotations: map[string]string{
			"cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
			AnnotationRetire: "true", AnnotationRetireAt: "x", stats.Annotation: "{}",
		},
	}
	pod := newWorkerPod(podParams{Namespace: "ns", QWorker: "w", Spec: &corev1.PodSpec{}, Hash: "abc", Metadata: m})
	if pod.Labels["team"] != "a" || pod.Labels[LabelQWorker] != "w" || pod.Labels[LabelPodSpecHash] != "abc" {
		t.Fatalf("labels %v: want team=a and Swell's own labels winning", pod.Labels)
	}
	if len(pod.Annotations) != 1 || pod.Annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] != "false" {
		t.Fatalf("annotations %v: want safe-to-evict only (Swell's reserved keys dropped)", pod.Annotations)
	}
	if m.Labels[LabelQWorker] != "other" {
		t.Fatal("newWorkerPod modified the QWorker's podMetadata")
	}
}

// TestCreateBacksOffOnRejectedSpec drives create() against an API that
// rejects every pod (with the generated name in the error, as the real one
// does), on an injected clock: a pass tries one pod, the next pass inside
// the back-off tries none, and the status message stays the same.
func TestCreateBacksOffOnRejectedSpec(t *testing.T) {
	attempts := 0
	r := createTestReconciler(t, func(_ context.Context, _ client.WithWatch, obj client.Object, _ ...client.CreateOption) error {
		attempts++
		name := obj.GetGenerateName() + strings.Repeat(string(rune('a'+attempts%26)), 5)
		return apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, name, field.ErrorList{field.Required(field.NewPath("spec", "containers").Index(0).Child("image"), "")})
	})
	clk := r.Clock.(*clocktesting.FakePassiveClock)
	qw := &QWorker{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "workers", UID: "u"}}
	spec := workerSpec{Key: types.NamespacedName{Namespace: "ns", Name: "workers"}, PodSpec: &corev1.PodSpec{}}

	var messages []string
	tries := map[time.Duration]int{}
	for step := time.Duration(0); step <= 40*time.Second; step += 250 * time.Millisecond {
		clk.SetTime(t0.Add(step))
		before := attempts
		err := r.create(context.Background(), qw, spec, "h", 20, clk.Now())
		var held *heldError
		if !errors.As(err, &held) {
			t.Fatalf("at %s: create returned %v, want a held error", step, err)
		}
		tries[step] = attempts - before
		if len(messages) == 0 || messages[len(messages)-1] != held.Message {
			messages = append(messages, held.Message)
		}
		if !r.exp.satisfied(spec.Key, clk.Now()) {
			t.Fatalf("at %s: failed creations left expectations outstanding", step)
		}
	}
	// Back-offs of 1, 2, 4, 8, 16 s: tries at 0, 1, 3, 7, 15, 31 s.
	if attempts != 6 {
		t.Fatalf("%d create requests in 40 s of 4 passes a second, want 6 (one per back-off step): %v", attempts, tries)
	}
	if len(messages) != 1 {
		t.Fatalf("status message changed %d times: %q", len(messages), messages)
	}
	if strings.Contains(messages[0], "workers-a") || !strings.Contains(messages[0], `"workers-*"`) {
		t.Fatalf("message %q carries a generated pod name", messages[0])
	}
	st := qv1.QWorkerStatus{Conditions: []metav1.Condition{{Type: ConditionReady, Reason: "ActionFailed", Message: strings.Repeat("x", 2*maxMessageBytes)}}}
	markHeld(&st, &heldError{Reason: ReasonCreateBackOff})
	if c := meta.FindStatusCondition(st.Conditions, ConditionReady); c.Reason != ReasonCreateBackOff || len(c.Message) > maxMessageBytes {
		t.Fatalf("Ready condition %s, %d bytes", c.Reason, len(c.Message))
	}
}

// TestActPlansOnlyFromAListTheCacheHadCaughtUpFor: a pass listed its pods
// while one of two pods it created earlier was still on its way to the
// cache; the create event arrived while the pass waited for its
// measurement, so by the time it acts the expectation is met. Planning
// from that list would create the missing pod a second time: the pass
// must wait (the event has queued the next one), and a pass whose list
// came after the cache caught up creates only what is really missing.
func TestActPlansOnlyFromAListTheCacheHadCaughtUpFor(t *testing.T) {
	creates := 0
	r := createTestReconciler(t, func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		creates++
		return c.Create(ctx, obj, opts...)
	})
	key := types.NamespacedName{Namespace: "ns", Name: "workers"}
	qw := &QWorker{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "workers", UID: "u"}}
	spec := workerSpec{Key: key, PodSpec: &corev1.PodSpec{}}
	listed := newWorkerPod(podParams{Namespace: "ns", QWorker: "workers", Owner: *metav1.NewControllerRef(qw, GroupVersion.WithKind("QWorker")), Spec: spec.PodSpec, Hash: "h"})
	listed.Name = "workers-a"
	view := observe([]corev1.Pod{*listed}, t0, 0)

	r.exp.expect(key, t0, 2, nil)
	r.exp.created(key) // the first pod, in the list
	synced := r.exp.satisfied(key, t0)
	r.exp.created(key) // the second, after the list was taken
	if err := r.act(context.Background(), qw, spec, "h", view, decision{Desired: 2}, t0, synced); err != nil {
		t.Fatal(err)
	}
	if creates != 0 {
		t.Fatalf("a pass that listed before the cache caught up created %d pods, want 0", creates)
	}

	view = observe([]corev1.Pod{*listed}, t0, 0) // a later list: one pod really missing
	if err := r.act(context.Background(), qw, spec, "h", view, decision{Desired: 2}, t0, r.exp.satisfied(key, t0)); err != nil {
		t.Fatal(err)
	}
	if creates != 1 {
		t.Fatalf("a pass that listed after the cache caught up created %d pods, want the 1 missing", creates)
	}
}

// createTestReconciler is a reconciler on a fake API whose creates go
// through create, with an injected clock at t0.
func createTestReconciler(t *testing.T, create func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error) *Reconciler {
	t.Helper()
	scheme := runtime.NewScheme()
	_ = corev1.AddToScheme(scheme)
	_ = qv1.AddToScheme(scheme)
	c := fake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{Create: create}).Build()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return &Reconciler{Client: c, Recorder: record.NewFakeRecorder(1000), Clock: clocktesting.NewFakePassiveClock(t0), Metrics: m, exp: newExpectations()}
}
