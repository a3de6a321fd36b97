package cpa

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/scale"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
)

// ClusterOptions are what NewForCluster needs besides the configs.
type ClusterOptions struct {
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Clock is real time when nil.
	Clock clock.WithTicker
	// Runner is a new Executor when nil.
	Runner MethodRunner
	// Component names the event source; "swell-cpa" when empty.
	Component string
}

// NewForCluster wires an Autoscaler to a cluster: the scale client with a
// discovery-based REST mapper (any kind with a scale subresource), a dynamic
// client for the full target object, the metrics APIs when specs are set,
// and an event recorder. stop flushes and stops the event broadcaster.
func NewForCluster(restCfg *rest.Config, cfg *Config, o ClusterOptions) (a *Autoscaler, stop func(), err error) {
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	disc := memory.NewMemCacheClient(client.Discovery())
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(disc)
	scales, err := scale.NewForConfig(restCfg, mapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(disc))
	if err != nil {
		return nil, nil, fmt.Errorf("scale client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("dynamic client: %w", err)
	}
	target := &clusterTarget{ref: *cfg.ScaleTargetRef, namespace: cfg.Namespace, mapper: mapper, scales: scales, dynamic: dyn, client: client}
	var km *KubeMetrics
	if len(cfg.KubernetesMetricSpecs) > 0 {
		api, err := NewMetricsAPI(restCfg, disc, mapper)
		if err != nil {
			return nil, nil, err
		}
		km = &KubeMetrics{
			API:                     api,
			CPUInitializationPeriod: time.Duration(cfg.CPUInitializationPeriod) * time.Second,
			InitialReadinessDelay:   time.Duration(cfg.InitialReadinessDelay) * time.Second,
		}
	}
	component := o.Component
	if component == "" {
		component = "swell-cpa"
	}
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component})
	runner := o.Runner
	if runner == nil {
		runner = NewExecutor()
	}
	a, err = New(Options{
		Config: cfg, Target: target, Runner: runner, KubeMetrics: km, Recorder: recorder,
		Registerer: o.Registerer, Clock: o.Clock, Logger: o.Logger,
	})
	if err != nil {
		broadcaster.Shutdown()
		return nil, nil, err
	}
	return a, broadcaster.Shutdown, nil
}
