package nodepool

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/digitalocean"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/guard"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/hetzner"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/kwok"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/linode"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/vultr"
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
	case ProviderDigitalOcean, ProviderHetzner, ProviderLinode, ProviderVultr:
		p, err := newCloud(ctx, cfg)
		if err != nil {
			return nil, err
		}
		// Cloud calls can fail: the guard holds the pool (no create, no
		// delete) unless the cloud answers its size right before.
		return guard.Wrap(p), nil
	case ProviderClusterAPI:
		return newClusterAPI(ctx, cfg, client)
	default:
		return nil, fmt.Errorf("%s: %q is not a provider", KeyCloudProvider, cfg.CloudProvider)
	}
}

// newCloud builds an HTTP cloud provider; each paces and retries its calls
// through pkg/nodepool/provider/backoff.
func newCloud(ctx context.Context, cfg Config) (provider.Provider, error) {
	token := cfg.CloudProviderToken.Reveal()
	switch cfg.CloudProvider {
	case ProviderHetzner:
		h := cfg.Hcloud
		return hetzner.New(ctx, hetzner.Config{
			Token: token, Pool: cfg.NodePoolName, ServerType: h.ServerType, Image: h.Image, Location: h.Location,
			UserData: h.CloudInit.Reveal(), Network: h.Network, SSHKey: h.SSHKey,
		})
	case ProviderLinode:
		return linode.New(ctx, linode.Config{Token: token, ClusterName: cfg.ClusterName, NodePoolName: cfg.NodePoolName})
	case ProviderVultr:
		return vultr.New(ctx, vultr.Config{Token: token, ClusterName: cfg.ClusterName, NodePoolName: cfg.NodePoolName})
	default:
		return digitalocean.New(ctx, digitalocean.Config{Token: token, ClusterName: cfg.ClusterName, NodePoolName: cfg.NodePoolName})
	}
}
