package cpa

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/discovery"
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

	"github.com/swell-autoscaler/swell/pkg/egress"
)

// ClusterOptions are what NewForCluster needs besides the configs.
type ClusterOptions struct {
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Clock is real time when nil.
	Clock clock.WithTicker
	// Runner is a new Executor logging to Logger when nil.
	Runner MethodRunner
	// Egress, when set, restricts where the default Executor's http methods
	// may connect (ignored when Runner is set).
	Egress *egress.Policy
	// Component names the event source; "swell-cpa" when empty.
	Component string
}

// NewForCluster wires an Autoscaler to a cluster: the scale client with a
// discovery-based REST mapper (any kind with a scale subresource), a dynamic
// client for the full target object, the metrics APIs when specs are set,
// and an event recorder. stop flushes and stops the event broadcaster.
func NewForCluster(restCfg *rest.Config, cfg *Config, o ClusterOptions) (a *Autoscaler, stop func(), err error) {
	cc, err := NewClusterClients(restCfg)
	if err != nil {
		return nil, nil, err
	}
	client := cc.Client
	target := cc.Target(*cfg.ScaleTargetRef, cfg.Namespace)
	var km *KubeMetrics
	if len(cfg.KubernetesMetricSpecs) > 0 {
		api, err := NewMetricsAPI(restCfg, cc.Discovery, cc.Mapper)
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
		ex := NewExecutorWithLogger(o.Logger)
		ex.SetEgress(o.Egress)
		runner = ex
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

// ClusterClients are the clients a cluster Target needs. They are built
// once and shared: Swell's controller scales many targets with one set, so
// discovery is cached once rather than per PodAutoscaler.
type ClusterClients struct {
	Client    kubernetes.Interface
	Discovery discovery.CachedDiscoveryInterface
	Mapper    *restmapper.DeferredDiscoveryRESTMapper
	Scales    scale.ScalesGetter
	Dynamic   dynamic.Interface
}

// NewClusterClients builds the clients: a discovery-based REST mapper (any
// kind with a scale subresource, refreshed when a kind is unknown), the
// scale client and a dynamic client for the full target object.
func NewClusterClients(restCfg *rest.Config) (ClusterClients, error) {
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return ClusterClients{}, fmt.Errorf("kubernetes client: %w", err)
	}
	disc := memory.NewMemCacheClient(client.Discovery())
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(disc)
	scales, err := scale.NewForConfig(restCfg, mapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(disc))
	if err != nil {
		return ClusterClients{}, fmt.Errorf("scale client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return ClusterClients{}, fmt.Errorf("dynamic client: %w", err)
	}
	return ClusterClients{Client: client, Discovery: disc, Mapper: mapper, Scales: scales, Dynamic: dyn}, nil
}

// Target returns the cluster Target for ref in namespace. It is cheap: the
// controller makes one per pass instead of keeping one per object.
func (c ClusterClients) Target(ref autoscalingv2.CrossVersionObjectReference, namespace string) Target {
	return &clusterTarget{ref: ref, namespace: namespace, mapper: c.Mapper, scales: c.Scales, dynamic: c.Dynamic, client: c.Client}
}
