// Package qworker reconciles QWorker objects: it measures the queue through
// the ScalerConfig's source, decides the pool size with pkg/policy, creates
// and retires exactly the worker pods that decision names, and reports what
// it did in the QWorker's status, events and metrics.
package qworker
