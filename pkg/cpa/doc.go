// Package cpa runs Custom Pod Autoscaler (CPA) configurations unchanged, on
// Swell's pipeline.
//
// CPA lets users write the two halves of an autoscaler, metric gathering and
// evaluation, as a command or an HTTP call, while a base program does the
// Kubernetes work. This package is that base program: it reads CPA's
// config.yaml keys (and the environment variables that override them), feeds
// user logic the same JSON on stdin or over HTTP, reads the same
// `{"targetReplicas": N}` back, serves the same REST API, and scales any kind
// through its `scale` subresource.
//
// Where CPA is unsafe Swell deliberately differs, always additively:
//   - a method timeout of 0 or unset means [DefaultMethodTimeout], not "time out
//     at once";
//   - an evaluation that is not JSON or lacks targetReplicas is an error, never a
//     scale to zero;
//   - shell methods run the entrypoint directly (no shell interpreter);
//   - every failed tick holds the replica count, is recorded as a Kubernetes
//     event on the target and in Prometheus metrics, and turns /readyz red;
//   - HPA v2 `behavior` may be set besides `downscaleStabilization`.
//
// The decision maths (stabilisation, rate limits, fallback) is the shared
// pure code in pkg/policy; this package only wires user logic and the cluster
// to it.
package cpa
