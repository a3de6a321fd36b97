package worker

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/swell-autoscaler/swell/pkg/source/stats"
)

// Env var names, as QScaler's controller and SDK use them.
const (
	EnvQWorkerName     = "QWORKER_NAME"
	EnvPodSpecHash     = "POD_SPEC_HASH"
	EnvPullingInterval = "PULLING_INTERVAL"
	EnvHostname        = "HOSTNAME"
	EnvPodNamespace    = "POD_NAMESPACE"
	// EnvLeaveWhenOutdated ("true"/"false") is Options.LeaveWhenOutdated
	// for deployments that set it in the pod spec rather than in code.
	EnvLeaveWhenOutdated = "SWELL_LEAVE_WHEN_OUTDATED"
)

// namespaceFile is where Kubernetes mounts the pod's namespace.
const namespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Identity is who this worker is: its QWorker, pod and spec hash.
type Identity struct {
	QWorker   string
	Pod       string
	Namespace string
	// PodSpecHash is the hash the pod was created from; when the QWorker's
	// status.currentPodSpecHash differs, this worker is outdated.
	PodSpecHash string
	// PullingInterval is how often the worker re-checks its QWorker and pod
	// when no watch event arrived (a fallback: watches are the fast path).
	PullingInterval time.Duration
	// StatsInterval is how often, at most, the worker writes its task
	// counters to its pod (stats.Annotation) for the controller's
	// wait-time target: SWELL_STATS_INTERVAL seconds, default 10.
	StatsInterval time.Duration
	// LeaveWhenOutdated is SWELL_LEAVE_WHEN_OUTDATED (see
	// Options.LeaveWhenOutdated).
	LeaveWhenOutdated bool
}

// IdentityFromEnv reads the worker's identity from the environment the
// controller gives its pods. getenv is os.Getenv outside tests.
func IdentityFromEnv(getenv func(string) string) (Identity, error) {
	id := Identity{
		QWorker:     getenv(EnvQWorkerName),
		Pod:         getenv(EnvHostname),
		Namespace:   getenv(EnvPodNamespace),
		PodSpecHash: getenv(EnvPodSpecHash),
	}
	if id.Namespace == "" {
		if b, err := os.ReadFile(namespaceFile); err == nil {
			id.Namespace = strings.TrimSpace(string(b))
		}
	}
	var errs []error
	for name, v := range map[string]string{EnvQWorkerName: id.QWorker, EnvHostname: id.Pod, EnvPodSpecHash: id.PodSpecHash, EnvPodNamespace + " (or " + namespaceFile + ")": id.Namespace} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is not set", name))
		}
	}
	id.PullingInterval = 5 * time.Second
	if v := getenv(EnvPullingInterval); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || secs <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive number of seconds", EnvPullingInterval, v))
		} else {
			id.PullingInterval = time.Duration(secs * float64(time.Second))
		}
	}
	id.StatsInterval = stats.DefaultInterval
	if v := getenv(stats.EnvInterval); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || secs <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive number of seconds", stats.EnvInterval, v))
		} else {
			id.StatsInterval = time.Duration(secs * float64(time.Second))
		}
	}
	if v := getenv(EnvLeaveWhenOutdated); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want true or false", EnvLeaveWhenOutdated, v))
		}
		id.LeaveWhenOutdated = b
	}
	if err := errors.Join(errs...); err != nil {
		return Identity{}, fmt.Errorf("worker identity: %w", err)
	}
	return id, nil
}
