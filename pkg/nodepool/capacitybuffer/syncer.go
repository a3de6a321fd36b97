package capacitybuffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// defaultResync is how often the Syncer re-reads its objects even when
// nothing changed, so an outside edit or deletion is repaired.
const defaultResync = 5 * time.Minute

// Wanted is the buffer in slots for the server pods given: every pod not
// finished and not being deleted holds a slot (bound or still pending), and
// the buffer's percent applies to those, as in the node-pool scaler.
func Wanted(b policy.Buffer, pods []*corev1.Pod) int32 {
	inUse := int64(0)
	for _, p := range pods {
		if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			inUse++
		}
	}
	return int32(min(b.Wanted(inUse), math.MaxInt32))
}

// SyncerConfig describes a publish-only buffer: Swell owns no node, and
// the node autoscaler that does reads the CapacityBuffer.
type SyncerConfig struct {
	Client kubernetes.Interface
	// Spec names the objects and the slot shape; its Replicas is computed.
	Spec   Spec
	Buffer policy.Buffer
	// ServerPods selects the server pods, in every namespace.
	ServerPods labels.Selector
	// Resync forces a re-read of the objects this often; 0 is 5 minutes.
	Resync time.Duration
	Logger *slog.Logger
}

// Syncer keeps a CapacityBuffer in step with the server pods: each pod
// arriving or leaving recomputes the buffer, and a change is published.
type Syncer struct {
	cfg       SyncerConfig
	publisher *Publisher
	factory   informers.SharedInformerFactory
	pods      listerscorev1.PodLister
	synced    cache.InformerSynced
	wake      chan struct{}
	log       *slog.Logger
}

// NewSyncer checks the config and wires a pod informer narrowed to the
// server pods.
func NewSyncer(cfg SyncerConfig) (*Syncer, error) {
	if cfg.ServerPods == nil || cfg.ServerPods.Empty() {
		return nil, errors.New("capacity buffer: a server pod selector is required")
	}
	probe := cfg.Spec
	probe.Replicas = 0
	if err := probe.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Buffer.Validate(); err != nil {
		return nil, fmt.Errorf("capacity buffer: %w", err)
	}
	pub, err := NewPublisher(cfg.Client)
	if err != nil {
		return nil, err
	}
	if cfg.Resync <= 0 {
		cfg.Resync = defaultResync
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Syncer{cfg: cfg, publisher: pub, wake: make(chan struct{}, 1),
		log: log.With("capacityBuffer", cfg.Spec.Namespace+"/"+cfg.Spec.Name)}
	s.factory = informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = cfg.ServerPods.String()
	}))
	inf := s.factory.Core().V1().Pods()
	trigger := func(any) { s.trigger() }
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: trigger, DeleteFunc: trigger, UpdateFunc: func(_, n any) { s.trigger() },
	}); err != nil {
		return nil, fmt.Errorf("capacity buffer: pod handler: %w", err)
	}
	s.pods, s.synced = inf.Lister(), inf.Informer().HasSynced
	return s, nil
}

func (s *Syncer) trigger() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run publishes at start, on every server pod change and at each resync,
// until ctx ends. A failed publish is logged and retried on the next
// trigger or resync; it never deletes the published objects.
func (s *Syncer) Run(ctx context.Context) error {
	s.factory.Start(ctx.Done())
	defer s.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), s.synced) {
		return fmt.Errorf("capacity buffer: pod cache did not sync: %w", ctx.Err())
	}
	resync := time.NewTicker(s.cfg.Resync)
	defer resync.Stop()
	s.trigger()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-resync.C:
			s.publisher.Forget()
		}
		if err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("capacity buffer not published", "err", err)
		}
	}
}

// Sync publishes the buffer the cached server pods call for now.
func (s *Syncer) Sync(ctx context.Context) error {
	pods, err := s.pods.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("capacity buffer: list cached pods: %w", err)
	}
	spec := s.cfg.Spec
	spec.Replicas = Wanted(s.cfg.Buffer, pods)
	wrote, err := s.publisher.Publish(ctx, spec)
	if err != nil {
		return err
	}
	if wrote {
		s.log.Info("capacity buffer published", "replicas", spec.Replicas, "template", spec.TemplateName(), "servers", len(pods))
	}
	return nil
}
