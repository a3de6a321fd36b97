package qworker

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
)

// create makes up to n worker pods (at most maxCreatesPerPass) in
// slow-start batches, recording the expectation first. While a creation
// back-off runs it creates nothing and returns the *heldError; when a batch
// fails it stops, starts (or lengthens) the back-off and returns it.
func (r *Reconciler) create(ctx context.Context, qw *QWorker, spec workerSpec, hash string, n int, now time.Time) error {
	key := spec.Key
	if held := r.holds.held(key, now); held != nil {
		return held
	}
	batches := slowStartBatches(n, maxCreatesPerPass)
	total := 0
	for _, b := range batches {
		total += b
	}
	r.exp.expect(key, now, total, nil)
	owner := *metav1.NewControllerRef(qw, GroupVersion.WithKind("QWorker"))
	params := podParams{Namespace: qw.Namespace, QWorker: qw.Name, Owner: owner, Spec: spec.PodSpec, Hash: hash,
		PullingInterval: spec.podPullingInterval(), Metadata: qw.Spec.PodMetadata}
	created, tried := 0, 0
	var failure error
	for _, size := range batches {
		ok, err := r.createBatch(ctx, params, size)
		created += ok
		tried += size
		if err != nil {
			failure = err
			break
		}
	}
	// Creations never tried will not show in the cache.
	for range total - tried {
		r.exp.createFailed(key)
	}
	r.Metrics.podsCreated.Add(float64(created))
	if created > 0 {
		r.Recorder.Eventf(qw, corev1.EventTypeNormal, "CreatedPods", "created %d worker pod(s)", created)
	}
	if failure == nil {
		r.holds.createSucceeded(key)
		return nil
	}
	held := r.holds.createFailed(key, now, hash, stableMessage(qw.Name, failure))
	r.Recorder.Eventf(qw, corev1.EventTypeWarning, "CreatePodFailed", "%s (next try in %s)", fitMessage(held.Message), held.Wait)
	return held
}

// createBatch creates size pods at once and returns how many were created
// and the first error.
func (r *Reconciler) createBatch(ctx context.Context, p podParams, size int) (int, error) {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
		first   error
	)
	key := types.NamespacedName{Namespace: p.Namespace, Name: p.QWorker}
	for range size {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := r.Client.Create(ctx, newWorkerPod(p))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.exp.createFailed(key)
				if first == nil {
					first = fmt.Errorf("create worker pod: %w", err)
				}
				return
			}
			created++
		}()
	}
	wg.Wait()
	return created, first
}

// stampRetireAt gives retiring pods without a readable retire-at one (a
// mark set by hand), so the retirement timeout runs for them.
func (r *Reconciler) stampRetireAt(ctx context.Context, pods []*corev1.Pod, now time.Time) error {
	var first error
	for _, pod := range pods {
		patch := client.MergeFrom(pod)
		marked := pod.DeepCopy()
		marked.Annotations[AnnotationRetireAt] = now.UTC().Format(time.RFC3339)
		err := r.Client.Patch(ctx, marked, patch)
		if err != nil && !apierrors.IsNotFound(err) && first == nil {
			first = fmt.Errorf("stamp %s on a retiring pod: %w", AnnotationRetireAt, err)
		}
	}
	return first
}

// relabel gives the live pods that lack them Swell's labels (pods made by
// an earlier Swell carry only the legacy keys, pods made by QScaler none),
// so status.selector selects every pod of the pool. Each pod is patched
// once: afterwards it carries them all.
func (r *Reconciler) relabel(ctx context.Context, qworker string, view poolView) error {
	var first error
	for _, pod := range view.byName {
		if podFinished(pod) || pod.DeletionTimestamp != nil {
			continue
		}
		add := missingLabels(pod, qworker)
		if add == nil {
			continue
		}
		patch := client.MergeFrom(pod)
		labelled := pod.DeepCopy()
		if labelled.Labels == nil {
			labelled.Labels = map[string]string{}
		}
		for k, v := range add {
			labelled.Labels[k] = v
		}
		err := r.Client.Patch(ctx, labelled, patch)
		if err != nil && !apierrors.IsNotFound(err) && first == nil {
			first = fmt.Errorf("add Swell's labels to a worker pod: %w", err)
		}
	}
	return first
}

// markHeld shows a creation back-off as the Ready condition's reason and
// fits every condition message within the API server's limit (a status
// patch with a longer one would fail, hiding the very error it carries).
func markHeld(status *qv1.QWorkerStatus, actErr error) {
	if held := onlyHeld(actErr); held != nil {
		if c := meta.FindStatusCondition(status.Conditions, ConditionReady); c != nil {
			c.Reason = held.Reason
		}
	}
	for i := range status.Conditions {
		status.Conditions[i].Message = fitMessage(status.Conditions[i].Message)
	}
}

// onlyHeld returns err when it is a *heldError itself: creation held back
// and nothing else failed. A held error joined with others is not one (the
// others must still be reported and retried), hence no errors.As.
func onlyHeld(err error) *heldError {
	held, _ := err.(*heldError) //nolint:errorlint // deliberately unwrapped, see above
	return held
}
