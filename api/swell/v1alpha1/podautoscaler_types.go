package v1alpha1

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Run modes of a PodAutoscaler, as CPA names them.
const (
	// RunModePerPod calls the metric method once per pod of the target.
	RunModePerPod = "per-pod"
	// RunModePerResource calls the metric method once, with the target.
	RunModePerResource = "per-resource"
)

// ScaleTargetRef names the object to scale, like autoscaling/v1's
// CrossVersionObjectReference: any kind with a scale subresource.
type ScaleTargetRef struct {
	// APIVersion of the target, e.g. apps/v1.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	APIVersion string `json:"apiVersion"`
	// Kind of the target, e.g. Deployment.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind"`
	// Name of the target, in the PodAutoscaler's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// HTTPMethod is a CPA http method: the JSON input goes in the `value` query
// parameter or in the body, the response body is the answer. It is the only
// method type in-cluster: a shell method would run user commands inside the
// controller process, so the API has no field for one. TLS file paths have
// no field either, as they would name files on the controller's disk.
type HTTPMethod struct {
	// Method is the HTTP verb.
	// +kubebuilder:default=GET
	// +kubebuilder:validation:Enum=GET;POST;PUT
	// +optional
	Method string `json:"method,omitempty"`
	// URL to call (http or https).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('http://') || self.startsWith('https://')",message="url must start with http:// or https://"
	URL string `json:"url"`
	// Headers to send. They are stored in the object in plain text: put no
	// credentials here.
	// +kubebuilder:validation:MaxProperties=32
	// +optional
	Headers map[string]string `json:"headers,omitempty"`
	// SuccessCodes are the statuses that count as an answer.
	// +kubebuilder:default={200}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Minimum=100
	// +kubebuilder:validation:items:Maximum=599
	// +optional
	SuccessCodes []int32 `json:"successCodes,omitempty"`
	// ParameterMode says where the JSON input goes: query or body.
	// +kubebuilder:default=query
	// +kubebuilder:validation:Enum=query;body
	// +optional
	ParameterMode string `json:"parameterMode,omitempty"`
	// TimeoutMilliseconds bounds one call; 0 or unset means 10 s.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=60000
	// +optional
	TimeoutMilliseconds int32 `json:"timeoutMilliseconds,omitempty"`
}

// MetricMethod is how metrics are gathered: a CPA http method, or the
// backlog of a queue measured through a ScalerConfig, as a QWorker measures
// it.
//
// +kubebuilder:validation:XValidation:rule="has(self.http) != has(self.source)",message="spec.metric: set exactly one of spec.metric.http or spec.metric.source"
type MetricMethod struct {
	// HTTP is the request that answers the metric, per pod or per resource
	// as runMode says.
	// +optional
	HTTP *HTTPMethod `json:"http,omitempty"`
	// Source measures a queue once per pass, whatever runMode says: its
	// backlog is the one metric answer (a number), so an expression such as
	// "ceil(value / 5)" reads it as value and an http evaluator gets it as
	// the value of the single entry of metrics.
	// +optional
	Source *QueueSource `json:"source,omitempty"`
}

// QueueSource names a queue of a Swell broker source: the ScalerConfig
// (quickube.com/v1alpha1) that says how to reach the broker and where its
// credentials are, and the queue in QWorker's spec.scaleConfig.queue form.
// The controller shares one connection per ScalerConfig with every QWorker
// using it. A broker that cannot be measured fails the pass: replicas are
// held, never scaled on an unknown backlog.
type QueueSource struct {
	// ScalerConfigRef is the name of a ScalerConfig in the PodAutoscaler's
	// namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	ScalerConfigRef string `json:"scalerConfigRef"`
	// Queue is what to measure, exactly as a QWorker names it: a Redis
	// list (or "<stream>?group=<group>"), a RabbitMQ queue, a NATS
	// "<stream>/<consumer>" (or "<consumer>" of the ScalerConfig's stream)
	// or a Kafka topic (lag of the ScalerConfig's consumer group).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Queue string `json:"queue"`
	// TargetWaitSeconds turns the queue's reading into the replica count
	// Swell's wait-time model (the QWorker's targetWaitSeconds) asks for,
	// so that targetPercentile of the tasks start within this many seconds
	// of being enqueued; the metric's value is then that count (evaluate
	// with expression "value"). Unset: the value is the backlog.
	// +kubebuilder:validation:Type=number
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:ExclusiveMinimum=true
	// +kubebuilder:validation:Maximum=86400
	// +optional
	TargetWaitSeconds *float64 `json:"targetWaitSeconds,omitempty"`
	// TargetPercentile is the fraction of tasks that must start within
	// targetWaitSeconds; default 0.95. From 0.5 to 0.999.
	// +kubebuilder:validation:Type=number
	// +optional
	TargetPercentile *float64 `json:"targetPercentile,omitempty"`
	// ServiceTimeSeconds is the mean time one task occupies a worker, for
	// pods that do not run Swell's SDK. Unset: measured from the
	// swell.dev/worker-stats annotation of the target's pods (Swell's SDKs
	// keep it); with neither the model stays unknown and replicas hold.
	// +kubebuilder:validation:Type=number
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:ExclusiveMinimum=true
	// +kubebuilder:validation:Maximum=86400
	// +optional
	ServiceTimeSeconds *float64 `json:"serviceTimeSeconds,omitempty"`
}

// EvaluateMethod is how a desired replica count is computed: a CPA http
// evaluator answering {"targetReplicas": N}, or a built-in expression.
//
// +kubebuilder:validation:XValidation:rule="has(self.http) != has(self.expression)",message="spec.evaluate: set exactly one of spec.evaluate.http or spec.evaluate.expression"
type EvaluateMethod struct {
	// HTTP is a CPA evaluator answering {"targetReplicas": N}.
	// +optional
	HTTP *HTTPMethod `json:"http,omitempty"`
	// Expression computes the count from the metric, e.g.
	// "ceil(value / 10)". It is a fixed arithmetic grammar, not a script:
	// numbers, the variables value (the sum of the metric answers, each a
	// number) and replicas (the current count), + - * / and parentheses,
	// and the functions ceil, floor, round, min and max. A fractional
	// result is rounded up.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Expression string `json:"expression,omitempty"`
}

// PodAutoscalerSpec is a CPA config.yaml as a Kubernetes object, run by the
// controller: the same keys and meanings, minus what only makes sense for a
// separate process (shell methods, hooks, the REST API, startTime).
//
// +kubebuilder:validation:XValidation:rule="self.minReplicas <= self.maxReplicas",message="spec.minReplicas must be less than or equal to spec.maxReplicas"
// +kubebuilder:validation:XValidation:rule="self.?behavior.?scaleUp.?stabilizationWindowSeconds.orValue(0) >= 0 && self.?behavior.?scaleUp.?stabilizationWindowSeconds.orValue(0) <= 3600",message="spec.behavior.scaleUp.stabilizationWindowSeconds must be from 0 to 3600"
// +kubebuilder:validation:XValidation:rule="self.?behavior.?scaleDown.?stabilizationWindowSeconds.orValue(0) >= 0 && self.?behavior.?scaleDown.?stabilizationWindowSeconds.orValue(0) <= 3600",message="spec.behavior.scaleDown.stabilizationWindowSeconds must be from 0 to 3600"
type PodAutoscalerSpec struct {
	// ScaleTargetRef is the object scaled through its scale subresource.
	ScaleTargetRef ScaleTargetRef `json:"scaleTargetRef"`
	// MinReplicas is the lower bound; 0 allows scaling to zero. As in CPA,
	// a target found at 0 while minReplicas is not 0 is left alone
	// (autoscaling disabled).
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	MinReplicas int32 `json:"minReplicas"`
	// MaxReplicas is the upper bound.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxReplicas int32 `json:"maxReplicas"`
	// Behavior rate-limits and stabilises changes as an HPA's behavior
	// does, after downscaleStabilizationSeconds.
	// +optional
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
	// DownscaleStabilizationSeconds (CPA's downscaleStabilization): a scale
	// down uses the highest evaluation of this window.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=3600
	// +optional
	DownscaleStabilizationSeconds int32 `json:"downscaleStabilizationSeconds,omitempty"`
	// IntervalSeconds between passes (CPA's interval, in seconds).
	// +kubebuilder:default=15
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	// +optional
	IntervalSeconds int32 `json:"intervalSeconds,omitempty"`
	// RunMode: per-pod calls the metric method for each pod, per-resource
	// once for the target.
	// +kubebuilder:default=per-pod
	// +kubebuilder:validation:Enum=per-pod;per-resource
	// +optional
	RunMode string `json:"runMode,omitempty"`
	// Metric gathers the metric.
	Metric MetricMethod `json:"metric"`
	// Evaluate turns the metrics into a replica count.
	Evaluate EvaluateMethod `json:"evaluate"`
	// KubernetesMetricSpecs are gathered from the metrics APIs and passed
	// to the methods as kubernetesMetrics, as in CPA. A failure to read them
	// is logged and the pass continues without them.
	// +kubebuilder:validation:MaxItems=10
	// +optional
	KubernetesMetricSpecs []autoscalingv2.MetricSpec `json:"kubernetesMetricSpecs,omitempty"`
}

// PodAutoscalerDecision is what the last successful pass decided and why.
type PodAutoscalerDecision struct {
	// Time of the pass.
	Time metav1.Time `json:"time"`
	// Inputs are the metric answers (resource=value), truncated.
	// +optional
	Inputs []string `json:"inputs,omitempty"`
	// Evaluation is the count the evaluation asked for.
	Evaluation int32 `json:"evaluation"`
	// Desired is the count after bounds, stabilisation and behavior.
	Desired int32 `json:"desired"`
	// Reason explains the step from evaluation to desired.
	Reason string `json:"reason"`
}

// PodAutoscalerStatus is written once per pass.
type PodAutoscalerStatus struct {
	// CurrentReplicas is the target's count seen by the last pass.
	// +optional
	CurrentReplicas int32 `json:"currentReplicas,omitempty"`
	// DesiredReplicas is the count the last successful pass set.
	// +optional
	DesiredReplicas int32 `json:"desiredReplicas,omitempty"`
	// LastDecision is the last successful pass; a failed pass keeps it.
	// +optional
	LastDecision *PodAutoscalerDecision `json:"lastDecision,omitempty"`
	// ObservedGeneration is the spec generation the last pass used.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready is False, with the failed stage as reason, while
	// passes fail.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// PodAutoscaler runs a Custom Pod Autoscaler inside Swell's controller: an
// http metric method or a queue source, an http evaluator or built-in
// expression, and the target's scale subresource, every intervalSeconds.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pas
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.scaleTargetRef.name`
// +kubebuilder:printcolumn:name="Min",type=integer,JSONPath=`.spec.minReplicas`
// +kubebuilder:printcolumn:name="Max",type=integer,JSONPath=`.spec.maxReplicas`
// +kubebuilder:printcolumn:name="Current",type=integer,JSONPath=`.status.currentReplicas`
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=`.status.desiredReplicas`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PodAutoscaler struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PodAutoscalerSpec   `json:"spec,omitempty"`
	Status PodAutoscalerStatus `json:"status,omitempty"`
}

// PodAutoscalerList is a list of PodAutoscalers.
//
// +kubebuilder:object:root=true
type PodAutoscalerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PodAutoscaler `json:"items"`
}

// init registers the kinds here rather than in groupversion_info.go, which
// the NodePoolScaler kind owns, so each kind's file stands alone.
func init() {
	SchemeBuilder.Register(func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, &PodAutoscaler{}, &PodAutoscalerList{})
		return nil
	})
}
