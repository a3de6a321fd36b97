// Package guard wraps a Provider so that a cloud which does not answer, or
// answers with a count Swell does not expect, holds the pool instead of
// changing it. The scaler plans from cached state; the guard checks the
// cloud once more, live, before anything that adds or removes a machine.
package guard

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider"
	"github.com/swell-autoscaler/swell/pkg/policy"
)

// Provider is a guarded provider.
type Provider struct {
	inner provider.Provider
}

// templater is a guarded provider that also passes on its template.
type templater struct {
	*Provider
	t provider.Templater
}

// Template is the inner provider's node template.
func (t templater) Template() policy.Resources { return t.t.Template() }

// Wrap guards p. The result implements provider.Templater exactly when p
// does, so the scaler's type check sees the same provider.
func Wrap(p provider.Provider) provider.Provider {
	g := &Provider{inner: p}
	if t, ok := p.(provider.Templater); ok {
		return templater{Provider: g, t: t}
	}
	return g
}

// Size asks the inner provider.
func (g *Provider) Size(ctx context.Context) (int, error) {
	return g.inner.Size(ctx)
}

// Resize grows the pool to n only if the cloud answers its size now and n
// is above it. Setting a lower count would let the cloud choose which
// machine to remove, so that is refused; an equal count sends nothing.
func (g *Provider) Resize(ctx context.Context, n int) error {
	cur, err := g.inner.Size(ctx)
	if err != nil {
		return fmt.Errorf("holding the pool: the provider did not answer its size, so it is not resized to %d: %w", n, err)
	}
	if n < cur {
		return fmt.Errorf("holding the pool: the provider counts %d nodes and a resize to %d would let it pick which to remove; Swell shrinks only by deleting chosen nodes", cur, n)
	}
	if n == cur {
		return nil
	}
	return g.inner.Resize(ctx, n)
}

// Delete deletes the chosen nodes only if the cloud answers its size now:
// during an outage nothing is deleted, and the scaler tries again at a
// later pass, re-checking the nodes first.
func (g *Provider) Delete(ctx context.Context, nodes []*corev1.Node) error {
	if len(nodes) == 0 {
		return nil
	}
	if _, err := g.inner.Size(ctx); err != nil {
		return fmt.Errorf("holding the pool: the provider did not answer its size, so %d node(s) are not deleted: %w", len(nodes), err)
	}
	return g.inner.Delete(ctx, nodes)
}
