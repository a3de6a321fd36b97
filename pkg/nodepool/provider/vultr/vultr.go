// Package vultr is a node-pool provider for Vultr Kubernetes Engine (VKE)
// through govultr: it sets a VKE node pool's node quantity to grow it and
// deletes the exact nodes the scaler chose, by their VKE node IDs, so the
// cloud never picks a node that still runs a server.
package vultr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/vultr/govultr/v3"
	corev1 "k8s.io/api/core/v1"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/backoff"
)

// LabelNodeID is the label VKE puts on every node with its VKE node ID.
const LabelNodeID = "vke.vultr.com/node-id"

// ProviderIDPrefix starts node.spec.providerID on VKE nodes; the rest is
// the node's instance ID, which is also its ID in the node pool.
const ProviderIDPrefix = "vultr://"

// Config selects the cluster and pool, each by label or ID.
type Config struct {
	// Token is the API key. It goes into the Authorization header and
	// nowhere else.
	Token        string
	ClusterName  string
	NodePoolName string
	// BaseURL overrides the API endpoint (tests use a local server).
	BaseURL string
	// HTTPClient is the transport under the token; nil is the default.
	HTTPClient *http.Client
	// Backoff paces calls and retries 429/5xx answers; zero fields take
	// backoff.Default (Vultr allows 30 calls a second).
	Backoff        backoff.Policy
	BackoffOptions []backoff.Option
}

// Provider resizes one VKE node pool and deletes its nodes.
type Provider struct {
	client    *govultr.Client
	clusterID string
	poolID    string
}

// New resolves the cluster and pool IDs once, so a wrong name fails at
// start.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.Token == "" || cfg.ClusterName == "" || cfg.NodePoolName == "" {
		return nil, errors.New("vultr provider: token, cluster name and node pool name are required")
	}
	client := govultr.NewClient(backoff.BearerClient(cfg.HTTPClient, cfg.Token, cfg.Backoff, cfg.BackoffOptions...))
	// The backoff transport is the one retry layer.
	client.SetRetryLimit(0)
	client.SetUserAgent("swell-nodepool")
	if cfg.BaseURL != "" {
		if err := client.SetBaseURL(cfg.BaseURL); err != nil {
			return nil, fmt.Errorf("vultr provider: base URL: %w", err)
		}
	}
	p := &Provider{client: client}
	var err error
	if p.clusterID, err = p.findCluster(ctx, cfg.ClusterName); err != nil {
		return nil, err
	}
	if p.poolID, err = p.findPool(ctx, cfg.NodePoolName); err != nil {
		return nil, err
	}
	return p, nil
}

const perPage = 100

// findCluster matches the cluster's label, else its ID, across pages.
func (p *Provider) findCluster(ctx context.Context, name string) (string, error) {
	opts := &govultr.ListOptions{PerPage: perPage}
	byID := ""
	for {
		clusters, meta, resp, err := p.client.Kubernetes.ListClusters(ctx, opts)
		closeBody(resp)
		if err != nil {
			return "", fmt.Errorf("vultr provider: list VKE clusters: %w", err)
		}
		for _, c := range clusters {
			if c.Label == name {
				return c.ID, nil
			}
			if c.ID == name {
				byID = c.ID
			}
		}
		if opts.Cursor = next(meta); opts.Cursor == "" {
			break
		}
	}
	if byID != "" {
		return byID, nil
	}
	return "", fmt.Errorf("vultr provider: cluster-name %q: no VKE cluster has this label or ID", name)
}

// findPool matches the pool's label, else its ID, across pages.
func (p *Provider) findPool(ctx context.Context, name string) (string, error) {
	opts := &govultr.ListOptions{PerPage: perPage}
	byID := ""
	for {
		pools, meta, resp, err := p.client.Kubernetes.ListNodePools(ctx, p.clusterID, opts)
		closeBody(resp)
		if err != nil {
			return "", fmt.Errorf("vultr provider: list node pools of VKE cluster %s: %w", p.clusterID, err)
		}
		for _, np := range pools {
			if np.Label != name && np.ID != name {
				continue
			}
			if np.AutoScaler {
				return "", fmt.Errorf("vultr provider: node-pool-name %q: pool %s has VKE's own auto scaler on, which would remove nodes of its choosing; turn it off so Swell alone sets the quantity", name, np.ID)
			}
			if np.Label == name {
				return np.ID, nil
			}
			byID = np.ID
		}
		if opts.Cursor = next(meta); opts.Cursor == "" {
			break
		}
	}
	if byID != "" {
		return byID, nil
	}
	return "", fmt.Errorf("vultr provider: node-pool-name %q: no pool of VKE cluster %s has this label or ID", name, p.clusterID)
}

// closeBody closes an answer govultr hands back; it has read the body
// already, so this only keeps the contract visible.
func closeBody(resp *http.Response) {
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
}

func next(meta *govultr.Meta) string {
	if meta == nil || meta.Links == nil {
		return ""
	}
	return meta.Links.Next
}

func (p *Provider) pool(ctx context.Context) (*govultr.NodePool, error) {
	np, resp, err := p.client.Kubernetes.GetNodePool(ctx, p.clusterID, p.poolID)
	closeBody(resp)
	if err != nil {
		return nil, fmt.Errorf("vultr provider: get node pool %s: %w", p.poolID, err)
	}
	if np == nil {
		return nil, fmt.Errorf("vultr provider: get node pool %s: empty answer", p.poolID)
	}
	return np, nil
}

// Size is the pool's node quantity.
func (p *Provider) Size(ctx context.Context) (int, error) {
	np, err := p.pool(ctx)
	if err != nil {
		return 0, err
	}
	return np.NodeQuantity, nil
}

// Resize sets the pool's node quantity.
func (p *Provider) Resize(ctx context.Context, n int) error {
	if n < 1 {
		return fmt.Errorf("vultr provider: a VKE node pool cannot be resized to %d nodes", n)
	}
	_, resp, err := p.client.Kubernetes.UpdateNodePool(ctx, p.clusterID, p.poolID, &govultr.NodePoolReqUpdate{NodeQuantity: n})
	closeBody(resp)
	if err != nil {
		return fmt.Errorf("vultr provider: set node pool %s quantity to %d: %w", p.poolID, n, err)
	}
	return nil
}

// Delete deletes each node by its VKE node ID (label vke.vultr.com/node-id,
// else node.spec.providerID); VKE lowers the pool's quantity with each. A
// node not in this pool's node list is refused, not deleted.
func (p *Provider) Delete(ctx context.Context, nodes []*corev1.Node) error {
	if len(nodes) == 0 {
		return nil
	}
	np, err := p.pool(ctx)
	if err != nil {
		return err
	}
	members := make(map[string]bool, len(np.Nodes))
	for _, n := range np.Nodes {
		members[n.ID] = true
	}
	var errs []error
	for _, n := range nodes {
		id := nodeID(n)
		switch {
		case id == "":
			errs = append(errs, fmt.Errorf("vultr provider: node %s has no %s label and its providerID %q is not %s<id>: not deleting it", n.Name, LabelNodeID, n.Spec.ProviderID, ProviderIDPrefix))
		case !members[id]:
			errs = append(errs, fmt.Errorf("vultr provider: node %s (VKE node %s) is not in pool %s: not deleting it", n.Name, id, p.poolID))
		default:
			if err := p.client.Kubernetes.DeleteNodePoolInstance(ctx, p.clusterID, p.poolID, id); err != nil {
				errs = append(errs, fmt.Errorf("vultr provider: delete node %s (VKE node %s): %w", n.Name, id, err))
			}
		}
	}
	return errors.Join(errs...)
}

// nodeID is a node's VKE node ID, "" when it carries none.
func nodeID(n *corev1.Node) string {
	if id := n.Labels[LabelNodeID]; id != "" {
		return id
	}
	id, ok := strings.CutPrefix(n.Spec.ProviderID, ProviderIDPrefix)
	if !ok {
		return ""
	}
	return id
}
