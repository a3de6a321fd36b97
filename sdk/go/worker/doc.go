// Package worker is Swell's Go SDK for queue workers run by a QWorker.
//
// A worker takes one task at a time from its queue, runs the handler, and
// acknowledges the task only after the handler returned. It stops taking
// tasks when it should leave — the controller chose its pod to retire, its
// pod-spec hash is outdated (a rollout), the QWorker asks for fewer pods
// than run (QScaler's rule, for controllers that do not choose), or it got
// SIGTERM — then finishes or hands back the task in hand, follows QScaler's
// exit protocol (drop its owner reference, delete its own pod) and returns.
//
// It reports its task counters (tasks finished, time spent on them) on its
// own pod's swell.dev/worker-stats annotation at most every
// SWELL_STATS_INTERVAL seconds (default 10) and only when they changed, so
// the controller can size the pool from a wait-time target; see
// pkg/source/stats.
//
// It reads the env QScaler's controller sets: QWORKER_NAME, POD_SPEC_HASH,
// PULLING_INTERVAL, HOSTNAME (the pod name), plus POD_NAMESPACE (or the
// service-account namespace file) for the namespace.
package worker
