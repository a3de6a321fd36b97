package nodepoolscaler

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/swell-autoscaler/swell/internal/controller/leaderguard"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider"
	"github.com/swell-autoscaler/swell/pkg/policy"
)

// healthProvider wraps a provider and remembers the outcome of its last
// call. The scaler tolerates a failed size query (it logs and counts
// registered nodes), so the wrapper is how the ProviderHealthy condition
// still sees it.
type healthProvider struct {
	inner provider.Provider

	mu      sync.Mutex
	called  bool
	lastErr error
}

// withHealth wraps p, keeping its Templater side when it has one: the plan
// sizes growth from the template, so hiding it would change decisions.
func withHealth(p provider.Provider) (provider.Provider, *healthProvider) {
	h := &healthProvider{inner: p}
	if t, ok := p.(provider.Templater); ok {
		return &healthTemplater{healthProvider: h, templater: t}, h
	}
	return h, h
}

func (h *healthProvider) record(err error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.called, h.lastErr = true, err
	return err
}

// Health reports whether the provider was called yet and the last error.
func (h *healthProvider) Health() (called bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.called, h.lastErr
}

// Size forwards to the provider and records the outcome.
func (h *healthProvider) Size(ctx context.Context) (int, error) {
	n, err := h.inner.Size(ctx)
	return n, h.record(err)
}

// Resize forwards to the provider and records the outcome.
func (h *healthProvider) Resize(ctx context.Context, n int) error {
	if err := leaderguard.Check(ctx, "node pool resize"); err != nil {
		return err
	}
	return h.record(h.inner.Resize(ctx, n))
}

// Delete forwards to the provider and records the outcome.
func (h *healthProvider) Delete(ctx context.Context, nodes []*corev1.Node) error {
	if err := leaderguard.Check(ctx, "node pool delete"); err != nil {
		return err
	}
	return h.record(h.inner.Delete(ctx, nodes))
}

// healthTemplater is a healthProvider whose provider knows its node shape.
type healthTemplater struct {
	*healthProvider
	templater provider.Templater
}

// Template forwards the wrapped provider's node shape.
func (h *healthTemplater) Template() policy.Resources { return h.templater.Template() }
