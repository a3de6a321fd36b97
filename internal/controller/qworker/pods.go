package qworker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/source/stats"
)

// Labels and annotations Swell puts on worker pods, all under Swell's own
// domain, swell.dev. QScaler's pods carry none; Swell's labels let people
// (and the scale subresource's selector) select a QWorker's pods, while the
// owner reference stays the source of truth for the controller.
const (
	// LabelQWorker names the QWorker that owns the pod; status.selector
	// selects on it.
	LabelQWorker = "swell.dev/qworker"
	// LabelPodSpecHash is the pod-spec hash the pod was created from.
	LabelPodSpecHash = "swell.dev/pod-spec-hash"
	// AnnotationRetire marks a pod the controller chose to retire. Swell's
	// SDKs watch their own pod for it, finish the task in hand and exit.
	AnnotationRetire = "swell.dev/retire"
	// AnnotationRetireAt is when the pod was chosen, for the retirement
	// timeout after which the controller deletes it.
	AnnotationRetireAt = "swell.dev/retire-at"
	// AnnotationPaused on a QWorker ("true") stops Swell from touching it or
	// its pods: no measuring, no scaling, no status writes — for maintenance.
	AnnotationPaused = "swell.dev/paused"
	// ConditionTakingTasks is the pod condition Swell's SDKs set True once
	// the worker's queue consumer is connected. A QWorker whose podSpec
	// lists it in readinessGates gets pods that turn Ready only then, so
	// a rollout retires an outdated pod only once its replacement takes
	// tasks (podReady and the retirement choice read the Ready condition).
	ConditionTakingTasks = "swell.dev/taking-tasks"
)

// The labels earlier Swell releases wrote instead of LabelQWorker and
// LabelPodSpecHash. Swell still writes them beside the new ones and reads
// them, so selectors written for them (NetworkPolicies, PodMonitors) keep
// matching for one more release; they are deprecated.
const (
	LegacyLabelQWorker     = "quickube.com/qworker"
	LegacyLabelPodSpecHash = "quickube.com/pod-spec-hash"
)

// Env vars every worker container receives, as QScaler's controller sets them.
const (
	EnvQWorkerName     = "QWORKER_NAME"
	EnvPodSpecHash     = "POD_SPEC_HASH"
	EnvPullingInterval = "PULLING_INTERVAL"
)

// podParams is everything a worker pod is built from.
type podParams struct {
	Namespace string
	QWorker   string
	Owner     metav1.OwnerReference
	Spec      *corev1.PodSpec
	Hash      string
	// PullingInterval is how often workers re-check their QWorker; 0 sets
	// no PULLING_INTERVAL (as QScaler's controller), leaving the user's
	// value, if any, or the worker's default.
	PullingInterval time.Duration
	// Metadata is spec.podMetadata; nil adds nothing.
	Metadata *qv1.PodMetadata
}

// newWorkerPod builds a bare pod as QScaler does — named <qworker>-<random>,
// controlled by the QWorker, with QWORKER_NAME and POD_SPEC_HASH appended to
// every container's env — plus spec.podMetadata, Swell's labels (which win)
// and (unless PullingInterval is 0) PULLING_INTERVAL.
func newWorkerPod(p podParams) *corev1.Pod {
	spec := p.Spec.DeepCopy()
	env := []corev1.EnvVar{
		{Name: EnvQWorkerName, Value: p.QWorker},
		{Name: EnvPodSpecHash, Value: p.Hash},
	}
	if p.PullingInterval > 0 {
		env = append(env, corev1.EnvVar{Name: EnvPullingInterval, Value: strconv.Itoa(max(int(p.PullingInterval/time.Second), 1))})
	}
	for i := range spec.InitContainers {
		spec.InitContainers[i].Env = appendEnv(spec.InitContainers[i].Env, env)
	}
	for i := range spec.Containers {
		spec.Containers[i].Env = appendEnv(spec.Containers[i].Env, env)
	}
	labels, annotations := podMetadata(p.Metadata)
	for k, v := range swellLabels(p.QWorker, p.Hash) {
		labels[k] = v
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    p.QWorker + "-",
			Namespace:       p.Namespace,
			Labels:          labels,
			Annotations:     annotations,
			OwnerReferences: []metav1.OwnerReference{p.Owner},
		},
		Spec: *spec,
	}
}

// swellLabels are the labels Swell keeps on a QWorker's pod: the QWorker's
// name and the pod's hash, under the current and the legacy keys. A pod
// without a hash gets no hash label.
func swellLabels(qworker, hash string) map[string]string {
	l := map[string]string{LabelQWorker: qworker, LegacyLabelQWorker: qworker}
	if hash != "" {
		l[LabelPodSpecHash] = shortHash(hash)
		l[LegacyLabelPodSpecHash] = shortHash(hash)
	}
	return l
}

// missingLabels returns the labels of swellLabels the pod lacks or carries
// with another value (a pod made by an earlier Swell has only the legacy
// keys, one made by QScaler none), nil when it has them all.
func missingLabels(pod *corev1.Pod, qworker string) map[string]string {
	var out map[string]string
	for k, v := range swellLabels(qworker, podHash(pod)) {
		if pod.Labels[k] == v {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// reservedAnnotations are the pod annotations Swell and its SDKs write;
// spec.podMetadata cannot preset them (a pod born with swell.dev/retire
// would retire at once).
var reservedAnnotations = []string{AnnotationRetire, AnnotationRetireAt, stats.Annotation}

// podMetadata copies spec.podMetadata's labels and annotations, leaving out
// the annotations Swell reserves. Annotations is nil when none remain.
func podMetadata(m *qv1.PodMetadata) (labels, annotations map[string]string) {
	labels = map[string]string{}
	if m == nil {
		return labels, nil
	}
	for k, v := range m.Labels {
		labels[k] = string(v)
	}
	for k, v := range m.Annotations {
		if slices.Contains(reservedAnnotations, k) {
			continue
		}
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[k] = v
	}
	return labels, annotations
}

// appendEnv adds vars, replacing same-named entries the user set, so the
// controller's values always win (a stale POD_SPEC_HASH would break rollouts).
func appendEnv(have, add []corev1.EnvVar) []corev1.EnvVar {
	out := make([]corev1.EnvVar, 0, len(have)+len(add))
	for _, e := range have {
		if !hasEnv(add, e.Name) {
			out = append(out, e)
		}
	}
	return append(out, add...)
}

func hasEnv(list []corev1.EnvVar, name string) bool {
	for _, e := range list {
		if e.Name == name {
			return true
		}
	}
	return false
}

// shortHash fits the hash into a label value (at most 63 characters).
func shortHash(h string) string {
	if len(h) > 63 {
		return h[:63]
	}
	return h
}

// podHash reads the spec hash a pod was created with: from its env (the
// truth, and all a QScaler-created pod has), else from its label, the
// current key first, then the legacy one.
func podHash(pod *corev1.Pod) string {
	for _, c := range pod.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == EnvPodSpecHash {
				return e.Value
			}
		}
	}
	if h, ok := pod.Labels[LabelPodSpecHash]; ok {
		return h
	}
	return pod.Labels[LegacyLabelPodSpecHash]
}

// podReady reports the pod's Ready condition.
func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// neverStarted reports whether no worker process of the pod has ever been
// ready to read a retirement mark: the pod is Pending (unschedulable, image
// pull failing, init containers running), or none of its containers is
// running, or it runs but its Ready condition has been False since its
// containers last started. Such pods are deleted, not marked: nobody is
// there to read the mark, and a Pending pod would make a node autoscaler
// provision a node for a pod already retired.
func neverStarted(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || podFinished(pod) || podReady(pod) {
		return false
	}
	if pod.Status.Phase == corev1.PodPending || pod.Status.Phase == "" {
		return true
	}
	var started time.Time
	for _, c := range pod.Status.ContainerStatuses {
		if c.State.Running != nil && c.State.Running.StartedAt.After(started) {
			started = c.State.Running.StartedAt.Time
		}
	}
	if started.IsZero() {
		return true
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			// Timestamps are whole seconds: a worker that fell from ready
			// within its start's second reads as never ready.
			return !c.LastTransitionTime.After(started)
		}
	}
	return true
}

// podFinished reports whether the pod's containers have all ended for good.
func podFinished(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// retireRequestedAt parses the retirement time annotation.
func retireRequestedAt(pod *corev1.Pod) (time.Time, bool, error) {
	v, ok := pod.Annotations[AnnotationRetireAt]
	if !ok {
		return time.Time{}, pod.Annotations[AnnotationRetire] == "true", nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, true, fmt.Errorf("pod %s annotation %s=%q: %w", pod.Name, AnnotationRetireAt, v, err)
	}
	return t, true, nil
}

// workerHash is the hash worker pods carry (POD_SPEC_HASH) and the status
// publishes: QScaler's PodSpecHash while spec.podMetadata is empty, so
// QScaler's workers and manifests see the hash they expect; otherwise the
// SHA-256 of the podSpec's and the podMetadata's JSON, so an edit of either
// rolls the workers over.
func workerHash(spec *corev1.PodSpec, m *qv1.PodMetadata) (string, error) {
	if m == nil || (len(m.Labels) == 0 && len(m.Annotations) == 0) {
		return PodSpecHash(spec)
	}
	b, err := json.Marshal(struct {
		PodSpec     *corev1.PodSpec  `json:"podSpec"`
		PodMetadata *qv1.PodMetadata `json:"podMetadata"`
	}{spec, m})
	if err != nil {
		return "", fmt.Errorf("encode podSpec and podMetadata: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
