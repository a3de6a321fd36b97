// Package policy holds Swell's pure scaling decisions: how many replicas a
// workload should run, and how many nodes a node pool should keep.
//
// Every job in Swell (QWorker queue workers, CPA-style custom autoscalers, the
// KEDA external scaler, node pools) and the simulator call the same code here,
// so what the simulator measures is what the controllers do. To make that
// possible the package imports nothing from Kubernetes and never reads a clock:
// callers pass plain structs and the current time. Stateful pieces
// (stabilisation windows, rate-limit history, failure counters) are small
// structs whose methods take `now time.Time`, so tests drive time directly.
//
// The pieces:
//   - [QueueSizing]: QScaler-compatible queue-proportional sizing with
//     activation and scale to zero.
//   - [ReplicasForMetric] and [HPARecommendation]: the Kubernetes HPA v2 replica
//     calculation (tolerance, Value/AverageValue/Utilization targets, missing
//     and unready pods, max over metrics).
//   - [Normalizer]: HPA v2 behaviour (stabilisation windows, Pods/Percent rate
//     policies, selectPolicy), and [HPA] which ties calculation and behaviour
//     together like the upstream controller's reconcile step.
//   - [DownscaleStabilizer]: CPA's downscaleStabilization.
//   - [FallbackGuard]: what to do when a metric source keeps failing.
//   - [FreeSlots] and [PlanBuffer]: node-buffer slot arithmetic for node pools.
package policy
