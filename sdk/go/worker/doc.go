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
// It reads the env QScaler's controller sets: QWORKER_NAME, POD_SPEC_HASH,
// PULLING_INTERVAL, HOSTNAME (the pod name), plus POD_NAMESPACE (or the
// service-account namespace file) for the namespace.
package worker
