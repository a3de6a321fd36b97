package nodepool

import (
	"fmt"
	"log/slog"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/swell-autoscaler/swell/pkg/nodepool/capacitybuffer"
)

// capacityBufferErrors checks capacity-buffer: a valid namespace/name,
// required when cloud-provider is none, and a node-selector the slot
// PodTemplate can carry (key=value pairs).
func (c Config) capacityBufferErrors() []error {
	fail := func(key, format string, args ...any) error {
		return fmt.Errorf("%s (env %s): %s", key, EnvName(key), fmt.Sprintf(format, args...))
	}
	if c.CapacityBuffer == "" {
		if c.CloudProvider == ProviderNone {
			return []error{fail(KeyCapacityBuffer, "is required for cloud-provider %s (namespace/name of the CapacityBuffer to publish): with no provider, publishing it is all Swell does", ProviderNone)}
		}
		return nil
	}
	var errs []error
	if _, _, err := capacitybuffer.ParseName(c.CapacityBuffer); err != nil {
		errs = append(errs, fail(KeyCapacityBuffer, "%v", err))
	}
	if c.NodeSelector != nil {
		if _, err := labels.ConvertSelectorToLabelsMap(c.NodeSelector.String()); err != nil {
			errs = append(errs, fail(KeyNodeSelector, "with %s the selector becomes the slot PodTemplate's nodeSelector, so it must be key=value[,key=value]", KeyCapacityBuffer))
		}
	}
	return errs
}

// NewCapacityBufferSyncer builds the publisher capacity-buffer asks for,
// or returns nil when it is unset. The buffer, slot shape, server pods and
// node selector are the pool's own keys, so the same config keeps the
// same headroom whether Swell or another node autoscaler adds the nodes.
func NewCapacityBufferSyncer(cfg Config, client kubernetes.Interface, log *slog.Logger) (*capacitybuffer.Syncer, error) {
	if cfg.CapacityBuffer == "" {
		return nil, nil
	}
	ns, name, err := capacitybuffer.ParseName(cfg.CapacityBuffer)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyCapacityBuffer, err)
	}
	sel, err := labels.ConvertSelectorToLabelsMap(cfg.NodeSelector.String())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyNodeSelector, err)
	}
	return capacitybuffer.NewSyncer(capacitybuffer.SyncerConfig{
		Client: client,
		Spec:   capacitybuffer.Spec{Namespace: ns, Name: name, Slot: cfg.Slot, NodeSelector: sel},
		Buffer: cfg.Buffer, ServerPods: cfg.ServerPodSelector(), Logger: log,
	})
}
