// Package hetzner is a node-pool provider for Hetzner Cloud through
// hcloud-go. Hetzner has no managed node pools, so a pool is, as in the
// Cluster Autoscaler's Hetzner provider, the set of servers carrying the
// label hcloud/node-group=<pool>: growing creates servers of one server
// type and image whose cloud-init joins them to the cluster, and shrinking
// deletes exactly the servers behind the nodes the scaler chose.
package hetzner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
	corev1 "k8s.io/api/core/v1"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/backoff"
)

// LabelPool is the server label that puts a server in a pool. It is the
// Cluster Autoscaler's, so servers it created are counted the same way.
const LabelPool = "hcloud/node-group"

// ProviderIDPrefix starts node.spec.providerID on nodes the Hetzner cloud
// controller manager initialised; the rest is the server ID.
const ProviderIDPrefix = "hcloud://"

// Config describes the pool and the servers it grows with.
type Config struct {
	// Token is the project's API token. It goes into the Authorization
	// header and nowhere else.
	Token string
	// Pool is the value of LabelPool on the pool's servers, and the
	// prefix of new servers' names.
	Pool string
	// ServerType (e.g. cpx31), Image (name or ID, e.g. ubuntu-24.04) and
	// Location (e.g. fsn1; empty lets Hetzner choose) of new servers.
	ServerType string
	Image      string
	Location   string
	// UserData is the cloud-init that joins a new server to the cluster.
	// It holds a join credential, so it comes from a file (a Secret).
	UserData string
	// Network (name or ID) and SSHKey (name or ID) are optional.
	Network string
	SSHKey  string
	// BaseURL overrides the API endpoint (tests use a local server).
	BaseURL string
	// HTTPClient is the transport under the backoff; nil is the default.
	HTTPClient *http.Client
	// Backoff paces calls and retries 429/5xx answers; zero fields take
	// Policy (Hetzner allows 3600 calls an hour).
	Backoff        backoff.Policy
	BackoffOptions []backoff.Option
	// NewName names a new server; nil is <pool>-<8 random hex digits>.
	NewName func() string
}

// Policy is the pacing for Hetzner's limit of one call a second on
// average.
var Policy = backoff.Policy{Rate: 1, Burst: 10}

// Provider grows and shrinks one labelled set of Hetzner Cloud servers.
type Provider struct {
	client   *hcloud.Client
	cfg      Config
	selector string
	network  *hcloud.Network
	sshKey   *hcloud.SSHKey
}

// New checks the configuration and resolves the network and SSH key once,
// so a wrong name fails at start.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	var missing []string
	for name, v := range map[string]string{"token": cfg.Token, "node pool name": cfg.Pool, "server type": cfg.ServerType, "image": cfg.Image, "cloud-init user data": cfg.UserData} {
		if strings.TrimSpace(v) == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("hetzner provider: required: %s", strings.Join(missing, ", "))
	}
	if cfg.Backoff == (backoff.Policy{}) {
		cfg.Backoff = Policy
	}
	if cfg.NewName == nil {
		cfg.NewName = func() string { return cfg.Pool + "-" + randomHex() }
	}
	opts := []hcloud.ClientOption{
		hcloud.WithToken(cfg.Token),
		hcloud.WithHTTPClient(backoff.Client(cfg.HTTPClient, cfg.Backoff, cfg.BackoffOptions...)),
		// The backoff transport is the one retry layer.
		hcloud.WithRetryOpts(hcloud.RetryOpts{MaxRetries: 0}),
		hcloud.WithApplication("swell-nodepool", ""),
	}
	if cfg.BaseURL != "" {
		opts = append(opts, hcloud.WithEndpoint(cfg.BaseURL))
	}
	p := &Provider{client: hcloud.NewClient(opts...), cfg: cfg, selector: LabelPool + "=" + cfg.Pool}
	if cfg.Network != "" {
		nw, _, err := p.client.Network.Get(ctx, cfg.Network)
		if err != nil {
			return nil, fmt.Errorf("hetzner provider: look up network %q: %w", cfg.Network, err)
		}
		if nw == nil {
			return nil, fmt.Errorf("hetzner provider: network %q: no such network", cfg.Network)
		}
		p.network = nw
	}
	if cfg.SSHKey != "" {
		key, _, err := p.client.SSHKey.Get(ctx, cfg.SSHKey)
		if err != nil {
			return nil, fmt.Errorf("hetzner provider: look up SSH key %q: %w", cfg.SSHKey, err)
		}
		if key == nil {
			return nil, fmt.Errorf("hetzner provider: SSH key %q: no such key", cfg.SSHKey)
		}
		p.sshKey = key
	}
	return p, nil
}

func randomHex() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// servers lists the pool's servers that are not being deleted.
func (p *Provider) servers(ctx context.Context) ([]*hcloud.Server, error) {
	all, err := p.client.Server.AllWithOpts(ctx, hcloud.ServerListOpts{ListOpts: hcloud.ListOpts{LabelSelector: p.selector}})
	if err != nil {
		return nil, fmt.Errorf("hetzner provider: list servers with %s: %w", p.selector, err)
	}
	out := all[:0]
	for _, s := range all {
		if s.Status != hcloud.ServerStatusDeleting {
			out = append(out, s)
		}
	}
	return out, nil
}

// Size counts the pool's servers, including those still booting.
func (p *Provider) Size(ctx context.Context) (int, error) {
	servers, err := p.servers(ctx)
	if err != nil {
		return 0, err
	}
	return len(servers), nil
}

// Resize creates servers until the pool has n. It never deletes: Swell
// shrinks only through Delete. A create is not repeated after a server
// error (it may have happened); the next pass counts again.
func (p *Provider) Resize(ctx context.Context, n int) error {
	servers, err := p.servers(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for range n - len(servers) {
		if err := p.create(ctx); err != nil {
			errs = append(errs, err)
			break
		}
	}
	return errors.Join(errs...)
}

func (p *Provider) create(ctx context.Context) error {
	start := true
	opts := hcloud.ServerCreateOpts{
		Name:             p.cfg.NewName(),
		ServerType:       &hcloud.ServerType{Name: p.cfg.ServerType},
		Image:            image(p.cfg.Image),
		UserData:         p.cfg.UserData,
		StartAfterCreate: &start,
		Labels:           map[string]string{LabelPool: p.cfg.Pool},
	}
	if p.cfg.Location != "" {
		opts.Location = &hcloud.Location{Name: p.cfg.Location}
	}
	if p.network != nil {
		opts.Networks = []*hcloud.Network{p.network}
	}
	if p.sshKey != nil {
		opts.SSHKeys = []*hcloud.SSHKey{p.sshKey}
	}
	if _, _, err := p.client.Server.Create(ctx, opts); err != nil {
		return fmt.Errorf("hetzner provider: create server %s (%s, %s): %w", opts.Name, p.cfg.ServerType, p.cfg.Image, err)
	}
	return nil
}

// image is an image by ID when the text is a number, else by name.
func image(s string) *hcloud.Image {
	if id, err := strconv.ParseInt(s, 10, 64); err == nil {
		return &hcloud.Image{ID: id}
	}
	return &hcloud.Image{Name: s}
}

// Delete deletes the server behind each node: the ID from
// node.spec.providerID (hcloud://<id>), else the pool's server named like
// the node. A node whose server is not in the pool is refused.
func (p *Provider) Delete(ctx context.Context, nodes []*corev1.Node) error {
	if len(nodes) == 0 {
		return nil
	}
	servers, err := p.servers(ctx)
	if err != nil {
		return err
	}
	byID := make(map[int64]*hcloud.Server, len(servers))
	byName := make(map[string]*hcloud.Server, len(servers))
	for _, s := range servers {
		byID[s.ID], byName[s.Name] = s, s
	}
	var errs []error
	for _, n := range nodes {
		s, err := p.serverOf(n, byID, byName)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, _, err := p.client.Server.DeleteWithResult(ctx, s); err != nil {
			errs = append(errs, fmt.Errorf("hetzner provider: delete server %d of node %s: %w", s.ID, n.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (p *Provider) serverOf(n *corev1.Node, byID map[int64]*hcloud.Server, byName map[string]*hcloud.Server) (*hcloud.Server, error) {
	if n.Spec.ProviderID == "" {
		if s := byName[n.Name]; s != nil {
			return s, nil
		}
		return nil, fmt.Errorf("hetzner provider: node %s has no providerID and no server of pool %s has its name: not deleting it", n.Name, p.cfg.Pool)
	}
	raw, ok := strings.CutPrefix(n.Spec.ProviderID, ProviderIDPrefix)
	id, err := strconv.ParseInt(raw, 10, 64)
	if !ok || err != nil {
		return nil, fmt.Errorf("hetzner provider: node %s: providerID %q is not %s<server id>: not deleting it", n.Name, n.Spec.ProviderID, ProviderIDPrefix)
	}
	s := byID[id]
	if s == nil {
		return nil, fmt.Errorf("hetzner provider: node %s (server %d) has no label %s: not deleting it", n.Name, id, p.selector)
	}
	return s, nil
}
