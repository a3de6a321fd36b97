// Package digitalocean is a node-pool provider for DigitalOcean Kubernetes
// (DOKS) through godo: it sets a node pool's count to grow it and deletes
// the exact nodes the scaler chose, found from their DOKS labels, so the
// cloud never picks a node that still runs a server.
package digitalocean

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/digitalocean/godo"
	corev1 "k8s.io/api/core/v1"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/backoff"
)

// DOKS labels on every node of a DigitalOcean Kubernetes cluster.
const (
	LabelNodeID     = "doks.digitalocean.com/node-id"
	LabelNodePoolID = "doks.digitalocean.com/node-pool-id"
)

// Config selects the cluster and pool by name, as kubescaler does.
type Config struct {
	// Token is the API token. It goes into the Authorization header and
	// nowhere else: not into errors, not into logs.
	Token        string
	ClusterName  string
	NodePoolName string
	// BaseURL overrides the API endpoint (tests use a local server).
	BaseURL string
	// HTTPClient is the transport under the token; nil is the default.
	HTTPClient *http.Client
	// Backoff paces calls and retries 429/5xx answers; zero fields take
	// backoff.Default (DigitalOcean allows 250 calls a minute).
	Backoff backoff.Policy
	// BackoffOptions replace the clock of the backoff (tests).
	BackoffOptions []backoff.Option
}

// Provider resizes one DOKS node pool and deletes its nodes.
type Provider struct {
	client    *godo.Client
	clusterID string
	poolID    string
	poolName  string
}

// New resolves the cluster and pool IDs from their names once.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.Token == "" || cfg.ClusterName == "" || cfg.NodePoolName == "" {
		return nil, errors.New("digitalocean provider: token, cluster name and node pool name are required")
	}
	hc := backoff.BearerClient(cfg.HTTPClient, cfg.Token, cfg.Backoff, cfg.BackoffOptions...)
	var opts []godo.ClientOpt
	if cfg.BaseURL != "" {
		opts = append(opts, godo.SetBaseURL(cfg.BaseURL))
	}
	opts = append(opts, godo.SetUserAgent("swell-nodepool"))
	client, err := godo.New(hc, opts...)
	if err != nil {
		return nil, fmt.Errorf("digitalocean provider: %w", err)
	}
	p := &Provider{client: client, poolName: cfg.NodePoolName}
	if p.clusterID, err = p.findCluster(ctx, cfg.ClusterName); err != nil {
		return nil, err
	}
	if p.poolID, err = p.findPool(ctx, cfg.NodePoolName); err != nil {
		return nil, err
	}
	return p, nil
}

const perPage = 200

func (p *Provider) findCluster(ctx context.Context, name string) (string, error) {
	for page := 1; ; page++ {
		clusters, resp, err := p.client.Kubernetes.List(ctx, &godo.ListOptions{Page: page, PerPage: perPage})
		if err != nil {
			return "", fmt.Errorf("digitalocean provider: list clusters: %w", err)
		}
		for _, c := range clusters {
			if c.Name == name {
				return c.ID, nil
			}
		}
		if lastPage(resp) {
			return "", fmt.Errorf("digitalocean provider: cluster-name %q: no such cluster", name)
		}
	}
}

func (p *Provider) findPool(ctx context.Context, name string) (string, error) {
	for page := 1; ; page++ {
		pools, resp, err := p.client.Kubernetes.ListNodePools(ctx, p.clusterID, &godo.ListOptions{Page: page, PerPage: perPage})
		if err != nil {
			return "", fmt.Errorf("digitalocean provider: list node pools of cluster %s: %w", p.clusterID, err)
		}
		for _, np := range pools {
			if np.Name == name {
				return np.ID, nil
			}
		}
		if lastPage(resp) {
			return "", fmt.Errorf("digitalocean provider: node-pool-name %q: no such pool in cluster %s", name, p.clusterID)
		}
	}
}

func lastPage(resp *godo.Response) bool {
	return resp == nil || resp.Links == nil || resp.Links.IsLastPage()
}

// Size is the pool's count.
func (p *Provider) Size(ctx context.Context) (int, error) {
	np, _, err := p.client.Kubernetes.GetNodePool(ctx, p.clusterID, p.poolID)
	if err != nil {
		return 0, fmt.Errorf("digitalocean provider: get node pool %s: %w", p.poolID, err)
	}
	return np.Count, nil
}

// Resize sets the pool's count.
func (p *Provider) Resize(ctx context.Context, n int) error {
	_, _, err := p.client.Kubernetes.UpdateNodePool(ctx, p.clusterID, p.poolID, &godo.KubernetesNodePoolUpdateRequest{Name: p.poolName, Count: &n})
	if err != nil {
		return fmt.Errorf("digitalocean provider: set node pool %s count to %d: %w", p.poolID, n, err)
	}
	return nil
}

// Delete deletes each node by its DOKS node ID (which also lowers the
// pool's count). A node of another pool is refused, not deleted.
func (p *Provider) Delete(ctx context.Context, nodes []*corev1.Node) error {
	var errs []error
	var byName map[string]string
	for _, n := range nodes {
		if pool, ok := n.Labels[LabelNodePoolID]; ok && pool != p.poolID {
			errs = append(errs, fmt.Errorf("digitalocean provider: node %s is in pool %s, not %s: not deleting it", n.Name, pool, p.poolID))
			continue
		}
		id := n.Labels[LabelNodeID]
		if id == "" {
			if byName == nil {
				var err error
				if byName, err = p.nodeIDs(ctx); err != nil {
					return errors.Join(append(errs, err)...)
				}
			}
			if id = byName[n.Name]; id == "" {
				errs = append(errs, fmt.Errorf("digitalocean provider: node %s has no %s label and is not in pool %s", n.Name, LabelNodeID, p.poolID))
				continue
			}
		}
		if _, err := p.client.Kubernetes.DeleteNode(ctx, p.clusterID, p.poolID, id, &godo.KubernetesNodeDeleteRequest{}); err != nil {
			errs = append(errs, fmt.Errorf("digitalocean provider: delete node %s (id %s): %w", n.Name, id, err))
		}
	}
	return errors.Join(errs...)
}

// nodeIDs maps the pool's node names to IDs, for nodes missing the label.
func (p *Provider) nodeIDs(ctx context.Context) (map[string]string, error) {
	np, _, err := p.client.Kubernetes.GetNodePool(ctx, p.clusterID, p.poolID)
	if err != nil {
		return nil, fmt.Errorf("digitalocean provider: get node pool %s: %w", p.poolID, err)
	}
	out := make(map[string]string, len(np.Nodes))
	for _, n := range np.Nodes {
		out[n.Name] = n.ID
	}
	return out, nil
}
