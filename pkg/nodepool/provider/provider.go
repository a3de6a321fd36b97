// Package provider is the seam between Swell's node-pool scaler and the
// infrastructure that owns the machines. The scaler decides which nodes to
// add or remove; a Provider only carries that out, so adding a cloud is one
// small package with three methods.
package provider

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// Provider grows a node pool and deletes chosen nodes from it.
type Provider interface {
	// Size is the pool's target node count as the provider knows it,
	// including nodes still being created.
	Size(ctx context.Context) (int, error)
	// Resize sets the pool's target node count. Swell only ever grows the
	// pool this way; it shrinks by deleting chosen nodes, so the provider
	// never picks a node that still runs a server.
	Resize(ctx context.Context, n int) error
	// Delete removes exactly these nodes and lowers the pool's count by as
	// many. The nodes come from the informer cache and are read-only.
	Delete(ctx context.Context, nodes []*corev1.Node) error
}

// Templater is optionally implemented by providers that know the
// allocatable resources of the nodes they create, so the scaler can size
// growth before the first node exists.
type Templater interface {
	Template() policy.Resources
}
