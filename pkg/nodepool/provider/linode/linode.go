// Package linode is a node-pool provider for Linode Kubernetes Engine
// (LKE) through linodego: it sets an LKE node pool's count to grow it and
// deletes the exact nodes the scaler chose, by their LKE node IDs, so the
// cloud never picks a node that still runs a server.
package linode

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/linode/linodego"
	corev1 "k8s.io/api/core/v1"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/backoff"
)

// LabelPoolID is the label LKE puts on every node with its pool's ID.
const LabelPoolID = "lke.linode.com/pool-id"

// ProviderIDPrefix starts node.spec.providerID on LKE nodes; the rest is
// the Linode instance ID.
const ProviderIDPrefix = "linode://"

// Config selects the cluster and pool, each by label or numeric ID.
type Config struct {
	// Token is the personal access token. It goes into the Authorization
	// header and nowhere else.
	Token        string
	ClusterName  string
	NodePoolName string
	// BaseURL overrides the API endpoint, e.g. "http://127.0.0.1:8080/v4"
	// (tests use a local server).
	BaseURL string
	// HTTPClient is the transport under the backoff; nil is the default.
	HTTPClient *http.Client
	// Backoff paces calls and retries 429/5xx answers; zero fields take
	// backoff.Default.
	Backoff        backoff.Policy
	BackoffOptions []backoff.Option
}

// Provider resizes one LKE node pool and deletes its nodes.
type Provider struct {
	client    *linodego.Client
	clusterID int
	poolID    int
}

// New resolves the cluster and pool IDs once, so a wrong name fails at
// start.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.Token == "" || cfg.ClusterName == "" || cfg.NodePoolName == "" {
		return nil, errors.New("linode provider: token, cluster name and node pool name are required")
	}
	client := linodego.NewClient(backoff.Client(cfg.HTTPClient, cfg.Backoff, cfg.BackoffOptions...))
	client.SetToken(cfg.Token)
	client.SetUserAgent("swell-nodepool")
	// The backoff transport is the one retry layer, and sizes must be
	// read fresh, not from linodego's response cache.
	client.SetRetryCount(0)
	client.UseCache(false)
	if cfg.BaseURL != "" {
		if _, err := client.UseURL(cfg.BaseURL); err != nil {
			return nil, fmt.Errorf("linode provider: base URL: %w", err)
		}
	}
	p := &Provider{client: &client}
	var err error
	if p.clusterID, err = p.findCluster(ctx, cfg.ClusterName); err != nil {
		return nil, err
	}
	if p.poolID, err = p.findPool(ctx, cfg.NodePoolName); err != nil {
		return nil, err
	}
	return p, nil
}

// findCluster matches the cluster's label, else its numeric ID.
func (p *Provider) findCluster(ctx context.Context, name string) (int, error) {
	clusters, err := p.client.ListLKEClusters(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("linode provider: list LKE clusters: %w", err)
	}
	ids := make([]int, 0, len(clusters))
	labels := make([]string, 0, len(clusters))
	for _, c := range clusters {
		ids, labels = append(ids, c.ID), append(labels, c.Label)
	}
	if id, ok := match(name, ids, labels); ok {
		return id, nil
	}
	return 0, fmt.Errorf("linode provider: cluster-name %q: no LKE cluster has this label or ID", name)
}

// findPool matches the pool's label, else its numeric ID.
func (p *Provider) findPool(ctx context.Context, name string) (int, error) {
	pools, err := p.client.ListLKENodePools(ctx, p.clusterID, nil)
	if err != nil {
		return 0, fmt.Errorf("linode provider: list node pools of LKE cluster %d: %w", p.clusterID, err)
	}
	ids := make([]int, 0, len(pools))
	labels := make([]string, 0, len(pools))
	autoscaled := map[int]bool{}
	for _, np := range pools {
		autoscaled[np.ID] = np.Autoscaler.Enabled
		label := ""
		if np.Label != nil {
			label = *np.Label
		}
		ids, labels = append(ids, np.ID), append(labels, label)
	}
	if id, ok := match(name, ids, labels); ok {
		if autoscaled[id] {
			return 0, fmt.Errorf("linode provider: node-pool-name %q: pool %d has LKE's own autoscaler on, which would remove nodes of its choosing; turn it off so Swell alone sets the count", name, id)
		}
		return id, nil
	}
	return 0, fmt.Errorf("linode provider: node-pool-name %q: no pool of LKE cluster %d has this label or ID", name, p.clusterID)
}

// match finds name among labels first, then among IDs.
func match(name string, ids []int, labels []string) (int, bool) {
	for i, l := range labels {
		if l != "" && l == name {
			return ids[i], true
		}
	}
	for _, id := range ids {
		if strconv.Itoa(id) == name {
			return id, true
		}
	}
	return 0, false
}

// Size is the pool's count.
func (p *Provider) Size(ctx context.Context) (int, error) {
	np, err := p.pool(ctx)
	if err != nil {
		return 0, err
	}
	return np.Count, nil
}

func (p *Provider) pool(ctx context.Context) (*linodego.LKENodePool, error) {
	np, err := p.client.GetLKENodePool(ctx, p.clusterID, p.poolID)
	if err != nil {
		return nil, fmt.Errorf("linode provider: get node pool %d: %w", p.poolID, err)
	}
	return np, nil
}

// Resize sets the pool's count.
func (p *Provider) Resize(ctx context.Context, n int) error {
	if n < 1 {
		return fmt.Errorf("linode provider: an LKE node pool cannot be resized to %d nodes", n)
	}
	if _, err := p.client.UpdateLKENodePool(ctx, p.clusterID, p.poolID, linodego.LKENodePoolUpdateOptions{Count: n}); err != nil {
		return fmt.Errorf("linode provider: set node pool %d count to %d: %w", p.poolID, n, err)
	}
	return nil
}

// Delete deletes each node by its LKE node ID, found in the pool's node
// list from the Linode instance ID in node.spec.providerID; LKE lowers the
// pool's count with each. A node not in this pool is refused, not deleted.
func (p *Provider) Delete(ctx context.Context, nodes []*corev1.Node) error {
	if len(nodes) == 0 {
		return nil
	}
	np, err := p.pool(ctx)
	if err != nil {
		return err
	}
	byInstance := make(map[int]string, len(np.Linodes))
	for _, l := range np.Linodes {
		byInstance[l.InstanceID] = l.ID
	}
	var errs []error
	for _, n := range nodes {
		id, err := p.nodeID(n, byInstance)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := p.client.DeleteLKENodePoolNode(ctx, p.clusterID, id); err != nil {
			errs = append(errs, fmt.Errorf("linode provider: delete node %s (LKE node %s): %w", n.Name, id, err))
		}
	}
	return errors.Join(errs...)
}

// nodeID is the LKE node ID of a Kubernetes node of this pool.
func (p *Provider) nodeID(n *corev1.Node, byInstance map[int]string) (string, error) {
	want := strconv.Itoa(p.poolID)
	if pool, ok := n.Labels[LabelPoolID]; ok && pool != want {
		return "", fmt.Errorf("linode provider: node %s is in pool %s, not %s: not deleting it", n.Name, pool, want)
	}
	raw, ok := strings.CutPrefix(n.Spec.ProviderID, ProviderIDPrefix)
	instance, err := strconv.Atoi(raw)
	if !ok || err != nil {
		return "", fmt.Errorf("linode provider: node %s: providerID %q is not %s<instance id>: not deleting it", n.Name, n.Spec.ProviderID, ProviderIDPrefix)
	}
	id, ok := byInstance[instance]
	if !ok {
		return "", fmt.Errorf("linode provider: node %s (Linode %d) is not in pool %d: not deleting it", n.Name, instance, p.poolID)
	}
	return id, nil
}
