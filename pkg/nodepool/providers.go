package nodepool

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/digitalocean"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/kwok"
)

// NewProvider builds the provider cloud-provider names. The digitalocean
// provider resolves its cluster and pool here, so a wrong name fails at
// start, not at the first resize.
func NewProvider(ctx context.Context, cfg Config, client kubernetes.Interface) (provider.Provider, error) {
	switch cfg.CloudProvider {
	case ProviderKwok:
		set, err := labels.ConvertSelectorToLabelsMap(cfg.NodeSelector.String())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", KeyNodeSelector, err)
		}
		prefix := cfg.NodePoolName
		if prefix == "" {
			prefix = "swell-kwok"
		}
		return kwok.New(kwok.Config{Client: client, NamePrefix: prefix, Labels: set, Capacity: cfg.KwokNodeRaw})
	case ProviderDigitalOcean:
		return digitalocean.New(ctx, digitalocean.Config{
			Token: cfg.CloudProviderToken.Reveal(), ClusterName: cfg.ClusterName, NodePoolName: cfg.NodePoolName,
		})
	case ProviderClusterAPI:
		return newClusterAPI(ctx, cfg, client)
	default:
		return nil, fmt.Errorf("%s: %q is not a provider", KeyCloudProvider, cfg.CloudProvider)
	}
}
