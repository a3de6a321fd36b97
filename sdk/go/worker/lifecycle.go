package worker

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// QWorkerResource is the QWorker API resource (QScaler's group and version).
var QWorkerResource = schema.GroupVersionResource{Group: "quickube.com", Version: "v1alpha1", Resource: "qworkers"}

// AnnotationRetire is set by the Swell controller on the pods it chose to retire.
const AnnotationRetire = "swell.dev/retire"

// Reason says why a worker stops taking tasks.
type Reason string

// Reasons a worker leaves.
const (
	ReasonRetired         Reason = "Retired"         // the controller chose this pod
	ReasonOutdated        Reason = "Outdated"        // the pod-spec hash changed (rollout; opt-in, see Options.LeaveWhenOutdated)
	ReasonScaleDown       Reason = "ScaleDown"       // desired < current (QScaler's rule, opt-in)
	ReasonQWorkerDeleted  Reason = "QWorkerDeleted"  // the QWorker is gone
	ReasonPodDeleted      Reason = "PodDeleted"      // the pod is terminating
	ReasonContextCanceled Reason = "ContextCanceled" // SIGTERM or the caller stopped
	ReasonQueueClosed     Reason = "QueueClosed"     // the queue cannot deliver again (see ErrQueueClosed)
)

// syncTimeout bounds how long start waits for its watches: a worker that
// cannot watch its QWorker or pod fails instead of waiting forever.
const syncTimeout = 30 * time.Second

// lifecycle watches the worker's QWorker and its own pod and says when the
// worker should stop. Watches react within a second; the informers' resync
// at PullingInterval re-checks even if an event was missed.
type lifecycle struct {
	id          Identity
	kube        kubernetes.Interface
	dyn         dynamic.Interface
	legacyScale bool
	// leaveOutdated makes the worker leave when the QWorker's pod-spec hash
	// differs from its own, without waiting for the controller's mark.
	leaveOutdated bool

	forbidden chan error // the first Forbidden watch error

	// pod is the worker's pod as last seen by the watch.
	pod atomic.Pointer[corev1.Pod]

	once   sync.Once
	stop   chan struct{}
	reason Reason
}

func newLifecycle(id Identity, kube kubernetes.Interface, dyn dynamic.Interface, legacyScale bool) *lifecycle {
	return &lifecycle{id: id, kube: kube, dyn: dyn, legacyScale: legacyScale, stop: make(chan struct{}), forbidden: make(chan error, 1)}
}

// Stopped is closed once the worker should stop taking tasks.
func (l *lifecycle) Stopped() <-chan struct{} { return l.stop }

// Reason is why Stopped closed.
func (l *lifecycle) Reason() Reason {
	<-l.stop
	return l.reason
}

func (l *lifecycle) trigger(r Reason) {
	l.once.Do(func() {
		l.reason = r
		close(l.stop)
	})
}

// start checks the worker's permissions, then runs the two informers until
// ctx ends. It returns once both have synced, or with an error naming the
// missing permission (at once when the API says so up front, else when a
// watch is refused), or after syncTimeout, or when stopCtx ends (SIGTERM).
func (l *lifecycle) start(ctx, stopCtx context.Context) error {
	if err := checkAccess(stopCtx, l.kube, l.id); err != nil {
		return err
	}
	byName := func(name string) func(*metav1.ListOptions) {
		return func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}
	}
	podFactory := informers.NewSharedInformerFactoryWithOptions(l.kube, l.id.PullingInterval,
		informers.WithNamespace(l.id.Namespace), informers.WithTweakListOptions(byName(l.id.Pod)))
	podInf := podFactory.Core().V1().Pods().Informer()
	if err := podInf.SetWatchErrorHandlerWithContext(l.watchError("pods")); err != nil {
		return fmt.Errorf("watch own pod: %w", err)
	}
	if _, err := podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    l.onPod,
		UpdateFunc: func(_, o any) { l.onPod(o) },
	}); err != nil {
		return fmt.Errorf("watch own pod: %w", err)
	}
	qwFactory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(l.dyn, l.id.PullingInterval, l.id.Namespace, byName(l.id.QWorker))
	qwInf := qwFactory.ForResource(QWorkerResource).Informer()
	if err := qwInf.SetWatchErrorHandlerWithContext(l.watchError("qworkers.quickube.com")); err != nil {
		return fmt.Errorf("watch QWorker: %w", err)
	}
	if _, err := qwInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    l.onQWorker,
		UpdateFunc: func(_, o any) { l.onQWorker(o) },
		DeleteFunc: func(any) { l.trigger(ReasonQWorkerDeleted) },
	}); err != nil {
		return fmt.Errorf("watch QWorker: %w", err)
	}
	podFactory.Start(ctx.Done())
	qwFactory.Start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(stopCtx, syncTimeout)
	defer cancel()
	go func() {
		select {
		case err := <-l.forbidden:
			l.forbidden <- err // keep it for the error below
			cancel()
		case <-syncCtx.Done():
		}
	}()
	if !cache.WaitForCacheSync(syncCtx.Done(), podInf.HasSynced, qwInf.HasSynced) {
		select {
		case err := <-l.forbidden:
			return fmt.Errorf("watch QWorker %s/%s and pod %s: %w", l.id.Namespace, l.id.QWorker, l.id.Pod, err)
		default:
		}
		return fmt.Errorf("watch QWorker %s/%s and pod %s: caches did not sync: %w", l.id.Namespace, l.id.QWorker, l.id.Pod, context.Cause(syncCtx))
	}
	return nil
}

// watchError keeps the first Forbidden list/watch error (the informer
// would retry it forever) so start can fail with it.
func (l *lifecycle) watchError(resource string) cache.WatchErrorHandlerWithContext {
	return func(ctx context.Context, r *cache.Reflector, err error) {
		if apierrors.IsForbidden(err) {
			select {
			case l.forbidden <- fmt.Errorf("the worker's ServiceAccount may not list/watch %s in namespace %s (see the worker Role in docs/qworker.md): %w", resource, l.id.Namespace, err):
			default:
			}
		}
		cache.DefaultWatchErrorHandler(ctx, r, err)
	}
}

func (l *lifecycle) onPod(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	l.pod.Store(pod)
	if pod.DeletionTimestamp != nil {
		l.trigger(ReasonPodDeleted)
		return
	}
	if pod.Annotations[AnnotationRetire] == "true" {
		l.trigger(ReasonRetired)
	}
}

func (l *lifecycle) onQWorker(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	hash, _, _ := unstructured.NestedString(u.Object, "status", "currentPodSpecHash")
	if l.leaveOutdated && hash != "" && hash != l.id.PodSpecHash {
		l.trigger(ReasonOutdated)
		return
	}
	if !l.legacyScale {
		return
	}
	desired, okD, _ := unstructured.NestedInt64(u.Object, "status", "desiredReplicas")
	current, okC, _ := unstructured.NestedInt64(u.Object, "status", "currentReplicas")
	if okD && okC && desired < current {
		l.trigger(ReasonScaleDown)
	}
}

// leave follows QScaler's exit protocol: drop the pod's owner references so
// the controller stops counting it at once, then delete the pod so it is not
// restarted after the process exits.
func leave(ctx context.Context, kube kubernetes.Interface, id Identity) error {
	pods := kube.CoreV1().Pods(id.Namespace)
	patch := []byte(`[{"op":"remove","path":"/metadata/ownerReferences"}]`)
	if _, err := pods.Patch(ctx, id.Pod, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsInvalid(err) {
		return fmt.Errorf("drop owner reference of pod %s: %w", id.Pod, err)
	}
	if err := pods.Delete(ctx, id.Pod, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete own pod %s: %w", id.Pod, err)
	}
	return nil
}
