// Package podautoscaler reconciles PodAutoscalers (swell.dev/v1alpha1): a
// Custom Pod Autoscaler run inside Swell's controller. Each reconcile is one
// CPA pass for one object, built from pkg/cpa's pieces (the http method
// executor, strict evaluation parsing, Kubernetes metrics, the cluster scale
// target) and pkg/policy's decision maths, so a PodAutoscaler decides
// exactly as `swell cpa` would with the same keys. A metric may instead be
// a queue's backlog, measured through the broker sources QWorkers share
// (internal/brokersource); when that source can push, its wake-ups
// (internal/controller/pushwake) run a pass at once while the target is idle
// at zero, so scale-from-zero does not wait for intervalSeconds, and the
// interval governs everything else (see idleAfter for why).
package podautoscaler
