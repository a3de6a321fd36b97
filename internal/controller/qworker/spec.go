package qworker

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/swell-autoscaler/swell/pkg/policy"
	"github.com/swell-autoscaler/swell/pkg/policy/waittime"
)

// RetirementMode says how chosen pods leave.
type RetirementMode string

const (
	// RetireCooperative annotates the chosen pods; Swell's SDK finishes the
	// task in hand and exits. Pods that do not leave within the retirement
	// timeout are deleted, so workers without the SDK still converge.
	RetireCooperative RetirementMode = "Cooperative"
	// RetireDelete deletes the chosen pods with their grace period: SIGTERM,
	// on which QScaler's and Swell's SDKs hand the task back.
	RetireDelete RetirementMode = "Delete"
	// RetireQScalerSDK is for unchanged QScaler Python SDK workers, which
	// leave on their own whenever the status shows desiredReplicas <
	// currentReplicas: the status is published first, with currentReplicas
	// never above desiredReplicas, then exactly the chosen pods are deleted
	// (SIGTERM), and the SDK's empty hand-back messages are removed from a
	// Redis list before it is measured (see qscalersdk.go).
	RetireQScalerSDK RetirementMode = "QScalerSDK"
)

// Defaults for the fields Swell adds to QScaler's API.
const (
	defaultPollingInterval = policy.QWorkerPollingInterval
	defaultRetireTimeout   = 10 * time.Minute
	defaultFailures        = policy.QWorkerFailureThreshold
)

// workerSpec is the part of a QWorker the reconciler acts on, decoded once
// from the API object so the rest of the package works on plain values.
type workerSpec struct {
	Key             types.NamespacedName
	PodSpec         *corev1.PodSpec
	ScalerConfig    string
	Queue           string
	ActivateVPA     bool
	Sizing          policy.QueueSizing
	Behavior        *policy.Behavior
	Fallback        policy.Fallback
	Retirement      RetirementMode
	RetireTimeout   time.Duration
	MaxSurge        int32
	PollingInterval time.Duration
	// WaitTarget, when set, sizes the pool from a wait-time target instead
	// of Sizing.ScalingFactor (see waittarget.go).
	WaitTarget *waittime.Target
}

// surge is the rollout surge: the configured bound, else a quarter of the
// pool rounded up (at least one), as Deployments default to 25 %.
func (s workerSpec) surge(desired int32) int32 {
	if s.MaxSurge > 0 {
		return s.MaxSurge
	}
	return max((desired+3)/4, 1)
}

// podPullingInterval is the PULLING_INTERVAL worker pods get: the polling
// interval, or none in mode QScalerSDK, as QScaler's controller sets none
// (its SDK then re-reads the QWorker every 2 s when idle).
func (s workerSpec) podPullingInterval() time.Duration {
	if s.Retirement == RetireQScalerSDK {
		return 0
	}
	return s.PollingInterval
}
