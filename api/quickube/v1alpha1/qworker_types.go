package v1alpha1

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// QWorkerSpec is QScaler's QWorker spec: a pod template and how to scale it.
type QWorkerSpec struct {
	// PodSpec is the worker pod. Swell creates bare pods from it, adding
	// QWORKER_NAME, POD_SPEC_HASH and PULLING_INTERVAL to every container's
	// env. Changing it rolls every worker over to the new spec.
	PodSpec corev1.PodSpec `json:"podSpec"`
	// ScaleConfig says which queue to watch and how to size the pool.
	ScaleConfig ScaleConfig `json:"scaleConfig"`
	// PodMetadata are labels and annotations copied onto every worker pod
	// (Swell addition; QScaler has none), for NetworkPolicies,
	// PodMonitors, mesh injection or safe-to-evict. Swell's own labels
	// (swell.dev/qworker, swell.dev/pod-spec-hash, and their legacy
	// quickube.com/ twins) and annotations (swell.dev/retire,
	// swell.dev/retire-at, swell.dev/worker-stats) win
	// over same-named keys here. Changing it rolls the workers over, like
	// a podSpec change.
	// +optional
	PodMetadata *PodMetadata `json:"podMetadata,omitempty"`

	// LegacyObjectMeta is accepted so manifests written for QScaler's early
	// CRD (which required spec.ObjectMeta) apply unchanged. Deprecated:
	// Swell ignores it; pods get their labels from Swell.
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	LegacyObjectMeta *runtime.RawExtension `json:"ObjectMeta,omitempty"`
}

// PodMetadata is the metadata Swell copies onto worker pods.
type PodMetadata struct {
	// Labels are added to every worker pod. Keys and values must be valid
	// label keys and values (values at most 63 characters).
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.size() <= 317 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",message="spec.podMetadata.labels keys must be label keys: an optional DNS-subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric"
	// +optional
	Labels map[string]LabelValue `json:"labels,omitempty"`
	// Annotations are added to every worker pod.
	// +kubebuilder:validation:MaxProperties=256
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// LabelValue is a Kubernetes label value: at most 63 letters, digits, '-',
// '_' or '.', starting and ending alphanumeric (or empty).
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`
type LabelValue string

// ScaleConfig is QScaler's scaling section plus Swell's optional additions.
//
// +kubebuilder:validation:XValidation:rule="self.?minReplicas.orValue(0) <= self.maxReplicas",message="spec.scaleConfig.minReplicas must be less than or equal to spec.scaleConfig.maxReplicas"
// +kubebuilder:validation:XValidation:rule="self.?fallback.?replicas.orValue(0) <= self.maxReplicas",message="spec.scaleConfig.fallback.replicas must not exceed spec.scaleConfig.maxReplicas"
// +kubebuilder:validation:XValidation:rule="!has(self.retirement) || !has(self.retirement.timeoutSeconds) || self.retirement.?mode.orValue('Cooperative') == 'Cooperative'",message="spec.scaleConfig.retirement.timeoutSeconds applies only to mode Cooperative (mode Delete uses the pod's terminationGracePeriodSeconds)"
// +kubebuilder:validation:XValidation:rule="self.?behavior.?scaleUp.?stabilizationWindowSeconds.orValue(0) >= 0 && self.?behavior.?scaleUp.?stabilizationWindowSeconds.orValue(0) <= 3600",message="spec.scaleConfig.behavior.scaleUp.stabilizationWindowSeconds must be from 0 to 3600"
// +kubebuilder:validation:XValidation:rule="self.?behavior.?scaleUp.?selectPolicy.orValue('Max') in ['Max', 'Min', 'Disabled']",message="spec.scaleConfig.behavior.scaleUp.selectPolicy must be Max, Min or Disabled"
// +kubebuilder:validation:XValidation:rule="!has(self.behavior) || !has(self.behavior.scaleUp) || !has(self.behavior.scaleUp.policies) || self.behavior.scaleUp.policies.all(p, p.type in ['Pods', 'Percent'])",message="spec.scaleConfig.behavior.scaleUp.policies[].type must be Pods or Percent"
// +kubebuilder:validation:XValidation:rule="!has(self.behavior) || !has(self.behavior.scaleUp) || !has(self.behavior.scaleUp.policies) || self.behavior.scaleUp.policies.all(p, p.value > 0)",message="spec.scaleConfig.behavior.scaleUp.policies[].value must be greater than 0"
// +kubebuilder:validation:XValidation:rule="!has(self.behavior) || !has(self.behavior.scaleUp) || !has(self.behavior.scaleUp.policies) || self.behavior.scaleUp.policies.all(p, p.periodSeconds > 0 && p.periodSeconds <= 1800)",message="spec.scaleConfig.behavior.scaleUp.policies[].periodSeconds must be from 1 to 1800"
// +kubebuilder:validation:XValidation:rule="self.?behavior.?scaleDown.?stabilizationWindowSeconds.orValue(0) >= 0 && self.?behavior.?scaleDown.?stabilizationWindowSeconds.orValue(0) <= 3600",message="spec.scaleConfig.behavior.scaleDown.stabilizationWindowSeconds must be from 0 to 3600"
// +kubebuilder:validation:XValidation:rule="self.?behavior.?scaleDown.?selectPolicy.orValue('Max') in ['Max', 'Min', 'Disabled']",message="spec.scaleConfig.behavior.scaleDown.selectPolicy must be Max, Min or Disabled"
// +kubebuilder:validation:XValidation:rule="!has(self.behavior) || !has(self.behavior.scaleDown) || !has(self.behavior.scaleDown.policies) || self.behavior.scaleDown.policies.all(p, p.type in ['Pods', 'Percent'])",message="spec.scaleConfig.behavior.scaleDown.policies[].type must be Pods or Percent"
// +kubebuilder:validation:XValidation:rule="!has(self.behavior) || !has(self.behavior.scaleDown) || !has(self.behavior.scaleDown.policies) || self.behavior.scaleDown.policies.all(p, p.value > 0)",message="spec.scaleConfig.behavior.scaleDown.policies[].value must be greater than 0"
// +kubebuilder:validation:XValidation:rule="!has(self.behavior) || !has(self.behavior.scaleDown) || !has(self.behavior.scaleDown.policies) || self.behavior.scaleDown.policies.all(p, p.periodSeconds > 0 && p.periodSeconds <= 1800)",message="spec.scaleConfig.behavior.scaleDown.policies[].periodSeconds must be from 1 to 1800"
// +kubebuilder:validation:XValidation:rule="!has(self.targetPercentile) || (self.targetPercentile >= 0.5 && self.targetPercentile <= 0.999)",message="spec.scaleConfig.targetPercentile must be from 0.5 to 0.999 (0.95 is p95)"
// +kubebuilder:validation:XValidation:rule="!has(self.targetPercentile) || has(self.targetWaitSeconds)",message="spec.scaleConfig.targetPercentile applies only with spec.scaleConfig.targetWaitSeconds"
type ScaleConfig struct {
	// ScalerConfigRef names the ScalerConfig (same namespace) that says how to
	// reach the broker.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	ScalerConfigRef string `json:"scalerConfigRef"`
	// Queue is the queue to watch: a Redis list or stream, a RabbitMQ queue,
	// a JetStream consumer ("stream/consumer" or the ScalerConfig's stream),
	// or a Kafka topic (with the ScalerConfig's consumer group).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Queue string `json:"queue"`
	// MinReplicas is the pool's floor; 0 lets the pool scale to zero when the
	// queue is empty (and back from zero on the first message). Defaults to
	// 0 so the stored object always has it: QScaler's Python SDK requires
	// the field when it reads its QWorker.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=0
	// +optional
	MinReplicas int32 `json:"minReplicas"`
	// MaxReplicas caps the pool.
	// +kubebuilder:validation:Minimum=1
	MaxReplicas int32 `json:"maxReplicas"`
	// ScalingFactor is pods per queued message, as in QScaler: desired =
	// ceil(backlog × scalingFactor), clamped to [minReplicas, maxReplicas].
	// QScaler takes integers (1 = a pod per message); Swell also takes
	// fractions (0.1 = a pod per ten messages), but QScaler's Python SDK
	// parses this field as an integer and refuses to start on a fraction:
	// pools of QScaler-SDK workers need an integer here.
	// +kubebuilder:validation:Type=number
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:ExclusiveMinimum=true
	ScalingFactor float64 `json:"scalingFactor"`
	// ActivateVPA records the peak CPU and memory use of each container in
	// status.maxContainerResourcesUsage, from metrics.k8s.io. Defaults to
	// false, as in QScaler's CRD, so the stored object always has it:
	// QScaler's Python SDK requires the field when it reads its QWorker.
	// +kubebuilder:default=false
	// +optional
	ActivateVPA bool `json:"activateVPA,omitempty"`

	// ActivationThreshold is the backlog at or below which the pool sits at
	// minReplicas (Swell addition; KEDA's activation semantics).
	// +kubebuilder:validation:Minimum=0
	// +optional
	ActivationThreshold *int64 `json:"activationThreshold,omitempty"`
	// CountInFlight adds delivered-but-unacknowledged messages to the
	// backlog, so busy workers are not scaled away mid-task (Swell addition;
	// QScaler counts queued messages only).
	// +optional
	CountInFlight bool `json:"countInFlight,omitempty"`
	// Behavior rate-limits and stabilises changes exactly as an HPA's
	// behavior does (Swell addition). Unset, or without
	// scaleDown.stabilizationWindowSeconds: a pool sized by scalingFactor
	// shrinks only to the highest count of the last max(10 s, two polling
	// intervals), rises at once, and is not rate-limited; 0 turns the
	// window off.
	// +optional
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
	// Fallback says what to do while the broker cannot be measured (Swell
	// addition). Swell never scales down because a measurement failed.
	// +optional
	Fallback *Fallback `json:"fallback,omitempty"`
	// Retirement says how surplus and outdated workers leave (Swell addition).
	// +optional
	Retirement *Retirement `json:"retirement,omitempty"`
	// TargetWaitSeconds sizes the pool from a wait-time target instead of
	// backlog × scalingFactor (Swell addition): the pool is kept just large
	// enough that targetPercentile of tasks wait at most this many seconds
	// from enqueue to start, predicted from the measured arrival rate, the
	// service time and concurrency the workers report (Swell's SDKs), the
	// backlog and the pool's pod start-up time. minReplicas, maxReplicas,
	// activationThreshold, fallback and behavior apply as with
	// scalingFactor. While the workers have reported nothing yet the pool
	// holds its size (scaling up from zero by scalingFactor). Unset: scale
	// by scalingFactor, as in QScaler.
	// +kubebuilder:validation:Type=number
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:ExclusiveMinimum=true
	// +kubebuilder:validation:Maximum=86400
	// +optional
	TargetWaitSeconds *float64 `json:"targetWaitSeconds,omitempty"`
	// TargetPercentile is the fraction of tasks that must start within
	// targetWaitSeconds; default 0.95 (p95). From 0.5 to 0.999.
	// +kubebuilder:validation:Type=number
	// +optional
	TargetPercentile *float64 `json:"targetPercentile,omitempty"`
	// PollingIntervalSeconds is how often the queue is measured when no push
	// notification arrived; default 5 (QScaler's period).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	// +optional
	PollingIntervalSeconds *int32 `json:"pollingIntervalSeconds,omitempty"`

	// LegacyBrokers is accepted so manifests written for QScaler's early CRD
	// (which required scaleConfig.brokers) apply unchanged. Deprecated:
	// Swell ignores it; the broker is the ScalerConfig's type.
	// +optional
	LegacyBrokers string `json:"brokers,omitempty"`
}

// Fallback is what to do while the queue's source keeps failing.
type Fallback struct {
	// FailureThreshold is how many consecutive failed measurements are
	// tolerated (holding the current size) before Replicas applies.
	// +kubebuilder:validation:Minimum=1
	FailureThreshold int32 `json:"failureThreshold"`
	// Replicas is the pool size once the threshold is reached; 0 or unset
	// keeps holding the current size.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
}

// RetirementMode says how the pods chosen to leave are told.
// +kubebuilder:validation:Enum=Cooperative;Delete;QScalerSDK
type RetirementMode string

const (
	// RetirementCooperative annotates the chosen pods (swell.dev/retire);
	// Swell's SDKs finish the task in hand and exit. Pods still there after
	// TimeoutSeconds are deleted.
	RetirementCooperative RetirementMode = "Cooperative"
	// RetirementDelete deletes the chosen pods with their grace period, for
	// workers without Swell's SDK (QScaler's SDK hands its task back on SIGTERM).
	RetirementDelete RetirementMode = "Delete"
	// RetirementQScalerSDK is for pools of unchanged QScaler Python SDK
	// workers. Those workers leave on their own whenever the status shows
	// desiredReplicas < currentReplicas, and hand back a placeholder
	// message when SIGTERM finds them idle. In this mode Swell publishes
	// currentReplicas without the pods it retires (never above
	// desiredReplicas) before it deletes any pod, so no kept worker reads
	// an excess; deletes exactly the pods it chose (SIGTERM: the SDK hands
	// the task in hand back to the queue); and, on a Redis list, removes
	// the SDK's empty hand-back messages (a pickled None) before it
	// measures, so they are never counted as backlog. PULLING_INTERVAL is
	// not set, as under QScaler (the SDK then polls every 2 s).
	RetirementQScalerSDK RetirementMode = "QScalerSDK"
)

// Retirement configures how workers leave on scale-down and rollout.
type Retirement struct {
	// Mode defaults to Cooperative (Swell's SDKs). Use QScalerSDK for pools
	// of QScaler Python SDK workers; Delete for workers that only need
	// SIGTERM.
	// +optional
	Mode RetirementMode `json:"mode,omitempty"`
	// TimeoutSeconds bounds a cooperative retirement; default 600.
	// +kubebuilder:validation:Minimum=1
	// +optional
	TimeoutSeconds *int32 `json:"timeoutSeconds,omitempty"`
	// MaxSurge bounds a rollout: at most this many pods above the desired
	// count run while outdated pods are replaced; default 25 % of desired
	// (at least 1).
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxSurge *int32 `json:"maxSurge,omitempty"`
}

// QWorkerStatus is QScaler's status plus Swell's report of what it did.
type QWorkerStatus struct {
	// CurrentReplicas counts the worker pods alive (not finished, not
	// terminating), retiring ones included; in retirement mode QScalerSDK
	// the pods Swell is retiring are left out (it is then never above
	// desiredReplicas), since QScaler's SDK workers leave whenever it is.
	// Defaulted to 0 so the field is always present (QScaler's SDK requires
	// it), also when a status patch leaves a zero out.
	// +optional
	// +kubebuilder:default=0
	CurrentReplicas int32 `json:"currentReplicas"`
	// DesiredReplicas is the pool size Swell decided.
	// +optional
	// +kubebuilder:default=0
	DesiredReplicas int32 `json:"desiredReplicas"`
	// CurrentPodSpecHash is the hex SHA-256 of spec.podSpec's JSON; workers
	// whose POD_SPEC_HASH differs are outdated.
	// +optional
	CurrentPodSpecHash string `json:"currentPodSpecHash,omitempty"`
	// MaxContainerResourcesUsage is, per container index, the peak CPU and
	// memory seen (activateVPA). Defaults to an empty list, as in QScaler's
	// CRD.
	// +kubebuilder:default={}
	// +optional
	MaxContainerResourcesUsage []corev1.ResourceList `json:"maxContainerResourcesUsage,omitempty"`

	// ReadyReplicas counts ready worker pods that are not retiring.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
	// Backlog is the last measured backlog.
	// +optional
	Backlog *int64 `json:"backlog,omitempty"`
	// Selector selects the worker pods (for the scale subresource).
	// +optional
	Selector string `json:"selector,omitempty"`
	// LastDecision explains the last scaling decision.
	// +optional
	LastDecision *Decision `json:"lastDecision,omitempty"`
	// WaitModel shows the wait-time model at work (targetWaitSeconds only):
	// its measured inputs and the wait it predicts at the decided size.
	// Values are rounded and rewritten only when one moves by more than a
	// tenth, so the status is not written on every measurement.
	// +optional
	WaitModel *WaitModel `json:"waitModel,omitempty"`
	// ObservedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready (the pool matches the decision), SourceHealthy (the
	// last measurement worked).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Decision is one scaling decision and its inputs, kept in the status so
// "why this many pods?" is answered by kubectl alone.
type Decision struct {
	// Time is when the decision was made.
	Time metav1.Time `json:"time"`
	// Backlog is the measured backlog the decision used.
	Backlog int64 `json:"backlog"`
	// Desired is the pool size decided.
	Desired int32 `json:"desired"`
	// Previous is the pool size decided before this one.
	Previous int32 `json:"previous"`
	// Reason names the rule that set Desired (e.g. scaling factor, clamp to
	// maxReplicas, stabilisation window, fallback).
	Reason string `json:"reason"`
}

// WaitModel is what the wait-time model measured and predicted, so "why
// this many pods?" under targetWaitSeconds is answered by kubectl alone.
type WaitModel struct {
	// ArrivalRate is the smoothed rate tasks arrive at, per second (from the
	// change in backlog plus the completions the workers report).
	// +kubebuilder:validation:Type=number
	ArrivalRate float64 `json:"arrivalRate"`
	// ServiceTimeSeconds is the mean time a worker spends on one task (busy
	// time per completed task, as the workers report).
	// +kubebuilder:validation:Type=number
	ServiceTimeSeconds float64 `json:"serviceTimeSeconds"`
	// Concurrency is how many tasks one worker runs at once.
	Concurrency int32 `json:"concurrency"`
	// StartupSeconds is how long the pool's recent pods took from creation
	// to Ready; the model adds it to the time a new pod needs to help.
	// +kubebuilder:validation:Type=number
	// +optional
	StartupSeconds float64 `json:"startupSeconds,omitempty"`
	// PredictedWaitSeconds is the predicted targetPercentile wait at
	// status.desiredReplicas (omitted when the pool cannot keep up at that
	// size, e.g. capped by maxReplicas).
	// +kubebuilder:validation:Type=number
	// +optional
	PredictedWaitSeconds *float64 `json:"predictedWaitSeconds,omitempty"`
	// Replicas is the model's pool size before minReplicas, maxReplicas and
	// behavior apply.
	Replicas int32 `json:"replicas"`
}

// QWorker is a pool of queue workers scaled on the queue's backlog.
//
// The scale subresource maps replicas to spec.scaleConfig.minReplicas: a
// scale client (kubectl scale, a CPA) sets the pool's floor, and the queue
// can still raise it up to maxReplicas.
//
// +kubebuilder:object:root=true
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="metadata.name must be at most 63 characters: it is the value of the swell.dev/qworker label on every worker pod"
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.scaleConfig.minReplicas,statuspath=.status.currentReplicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=qw,categories=swell
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=`.status.desiredReplicas`
// +kubebuilder:printcolumn:name="Current",type=integer,JSONPath=`.status.currentReplicas`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Backlog",type=integer,JSONPath=`.status.backlog`
// +kubebuilder:printcolumn:name="Min",type=integer,JSONPath=`.spec.scaleConfig.minReplicas`,priority=1
// +kubebuilder:printcolumn:name="Max",type=integer,JSONPath=`.spec.scaleConfig.maxReplicas`,priority=1
// +kubebuilder:printcolumn:name="Queue",type=string,JSONPath=`.spec.scaleConfig.queue`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type QWorker struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the worker pod and how to scale it.
	Spec QWorkerSpec `json:"spec"`
	// Status is what Swell measured, decided and runs.
	Status QWorkerStatus `json:"status,omitempty"`
}

// QWorkerList is a list of QWorkers.
//
// +kubebuilder:object:root=true
type QWorkerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the QWorkers.
	Items []QWorker `json:"items"`
}
