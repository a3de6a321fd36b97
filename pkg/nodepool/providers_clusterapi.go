package nodepool

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/client-go/kubernetes"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/clusterapi"
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
	return clusterapi.New(ctx, clusterapi.Config{REST: rc, Namespace: ns, Name: name, ClusterName: cfg.ClusterName})
}
