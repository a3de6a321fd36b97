package nodepool

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/client-go/kubernetes"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/clusterapi"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/guard"
)

// newClusterAPI builds the Cluster API provider on the clientset's own
// REST client (same host, credentials and rate limits): node-pool-name is
// the MachineDeployment ("namespace/name"), cluster-name, when set, must
// be its spec.clusterName. It resolves the MachineDeployment here, so a
// wrong name fails at start.
func newClusterAPI(ctx context.Context, cfg Config, client kubernetes.Interface) (provider.Provider, error) {
	ns, name, err := clusterapi.ParsePoolName(cfg.NodePoolName)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyNodePoolName, err)
	}
	rc := client.Discovery().RESTClient()
	if rc == nil {
		return nil, errors.New("clusterapi provider: the Kubernetes client has no REST client")
	}
	p, err := clusterapi.New(ctx, clusterapi.Config{REST: rc, Namespace: ns, Name: name, ClusterName: cfg.ClusterName})
	if err != nil {
		return nil, err
	}
	// As for the clouds: an API server that does not answer the
	// MachineDeployment's size right before a change holds the pool.
	return guard.Wrap(p), nil
}
