package cpa

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

// The JSON user logic receives and returns. Field names and order follow
// CPA, so existing scripts read them unchanged.

// MetricInfo is the input of metric gathering (per pod or per resource) and
// of the preMetric and postMetric hooks; Metrics is set for postMetric only.
type MetricInfo struct {
	Resource          any                `json:"resource"`
	Metrics           []ResourceMetric   `json:"metrics,omitempty"`
	RunType           string             `json:"runType"`
	KubernetesMetrics []KubernetesMetric `json:"kubernetesMetrics,omitempty"`
}

// ResourceMetric is one metric gathering result: the pod or resource name
// and the method's raw output.
type ResourceMetric struct {
	Resource string `json:"resource"`
	Value    string `json:"value"`
}

// EvaluateInfo is the input of evaluation and of the pre/postEvaluate
// hooks; Evaluation is set for postEvaluate only.
type EvaluateInfo struct {
	Metrics    []ResourceMetric `json:"metrics"`
	Resource   any              `json:"resource"`
	Evaluation *Evaluation      `json:"evaluation,omitempty"`
	RunType    string           `json:"runType"`
}

// Evaluation is what evaluation answers: the replica count it wants.
type Evaluation struct {
	TargetReplicas int32 `json:"targetReplicas"`
}

// ScaleInfo is the input of the preScale and postScale hooks.
type ScaleInfo struct {
	Evaluation     Evaluation                                 `json:"evaluation"`
	Resource       any                                        `json:"resource"`
	MinReplicas    int32                                      `json:"minReplicas"`
	MaxReplicas    int32                                      `json:"maxReplicas"`
	TargetReplicas int32                                      `json:"targetReplicas"`
	Namespace      string                                     `json:"namespace"`
	ScaleTargetRef *autoscalingv2.CrossVersionObjectReference `json:"scaleTargetRef"`
	RunType        string                                     `json:"runType"`
}
