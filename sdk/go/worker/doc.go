// Package worker is Swell's Go SDK for queue workers run by a QWorker.
//
// A worker takes one task at a time from its queue, runs the handler, and
// acknowledges the task only after the handler returned. It stops taking
// tasks when it should leave — the controller chose its pod to retire (on
// scale-down, and during a rollout a few old pods at a time within
// maxSurge), its pod-spec hash is outdated (opt-in:
// Options.LeaveWhenOutdated or SWELL_LEAVE_WHEN_OUTDATED=true, QScaler's
// rule, which makes a rollout a recreate), the QWorker asks for fewer pods
// than run (QScaler's rule, opt-in), or it got SIGTERM — then finishes or
// hands back the task in hand, follows QScaler's exit protocol (drop its
// owner reference, delete its own pod) and returns.
//
// At start it checks that its ServiceAccount may watch its pod and QWorker
// and write to its pod (SelfSubjectAccessReview) and fails within 30 s with
// an error naming what is missing; config/rbac/qworker-worker is the Role.
//
// When its pod spec lists the readiness gate ConditionTakingTasks, it sets
// that pod condition True just before its first Take (one pods/status
// patch), so the pod turns Ready, and a rollout retires an old pod for it,
// only once it takes tasks; a refused patch is logged and the worker goes on.
//
// It reports its task counters (tasks finished, time spent on them) on its
// own pod's swell.dev/worker-stats annotation at most every
// SWELL_STATS_INTERVAL seconds (default 10) and only when they changed, so
// the controller can size the pool from a wait-time target; see
// pkg/source/stats.
//
// It reads the env QScaler's controller sets: QWORKER_NAME, POD_SPEC_HASH,
// PULLING_INTERVAL, HOSTNAME (the pod name), plus POD_NAMESPACE (or the
// service-account namespace file) for the namespace and
// SWELL_LEAVE_WHEN_OUTDATED.
package worker
