package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/wait"
	basecmd "sigs.k8s.io/custom-metrics-apiserver/pkg/cmd"
)

// customMetricsNamespace and customMetricsName name the Service the
// custom.metrics.k8s.io and external.metrics.k8s.io APIServices point at.
const (
	customMetricsNamespace = "kube-system"
	customMetricsName      = "swell-test-metrics-adapter"
)

// customMetricsAPIs are the group/versions the adapter serves.
var customMetricsAPIs = []aggregatedAPI{
	{Group: "custom.metrics.k8s.io", Version: "v1beta1"},
	{Group: "custom.metrics.k8s.io", Version: "v1beta2"},
	{Group: "external.metrics.k8s.io", Version: "v1beta1"},
}

// startCustomMetrics serves the adapter until bgCtx ends, registers it
// with the aggregator and waits until both APIs answer through the
// apiserver. Like metrics-server it listens on a non-loopback address (the
// aggregator rejects loopback endpoints); unlike metrics-server it serves a
// certificate made here, so its APIServices pin that CA instead of
// skipping verification.
func (e *Env) startCustomMetrics(ctx, bgCtx context.Context) error {
	ip, err := nonLoopbackIPv4()
	if err != nil {
		return err
	}
	port, err := freePortOn(ip)
	if err != nil {
		return err
	}
	dir := filepath.Join(e.Dir, customMetricsName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("custom metrics adapter dir: %w", err)
	}
	caPEM, certFile, keyFile, err := writeServingCert(dir, customMetricsName+"."+customMetricsNamespace+".svc", ip)
	if err != nil {
		return err
	}
	values := newCustomMetrics()
	adapter, err := newAdapter(e.Kubeconfig, values, ip, port, certFile, keyFile)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- adapter.Run(bgCtx) }()
	if err := e.registerAggregatedAPI(ctx, aggregatedService{
		Namespace: customMetricsNamespace, Name: customMetricsName, IP: ip, Port: port, CABundle: caPEM,
	}, customMetricsAPIs...); err != nil {
		return err
	}
	if err := e.waitAggregated(ctx, errc, "/apis/custom.metrics.k8s.io/v1beta2", "/apis/external.metrics.k8s.io/v1beta1"); err != nil {
		return fmt.Errorf("custom metrics adapter: %w", err)
	}
	e.CustomMetrics = values
	return nil
}

// newAdapter configures the library's adapter through its own flag set
// (never the process's command line): delegated authentication and
// authorization and the object lister use the test cluster's admin
// kubeconfig, and it serves the certificate made for it.
func newAdapter(kubeconfig string, p *CustomMetrics, ip net.IP, port int, certFile, keyFile string) (*basecmd.AdapterBase, error) {
	a := &basecmd.AdapterBase{Name: customMetricsName, FlagSet: pflag.NewFlagSet(customMetricsName, pflag.ContinueOnError)}
	args := []string{
		"--lister-kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=" + ip.String(),
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + certFile,
		"--tls-private-key-file=" + keyFile,
	}
	if err := a.Flags().Parse(args); err != nil {
		return nil, fmt.Errorf("custom metrics adapter flags: %w", err)
	}
	mapper, err := a.RESTMapper()
	if err != nil {
		return nil, fmt.Errorf("custom metrics adapter: %w", err)
	}
	objs, err := a.DynamicClient()
	if err != nil {
		return nil, fmt.Errorf("custom metrics adapter: %w", err)
	}
	p.bind(mapper, objs)
	a.WithCustomMetrics(p)
	a.WithExternalMetrics(p)
	return a, nil
}

// waitAggregated polls each path through the apiserver until all answer
// 200, and fails at once if the adapter stops.
func (e *Env) waitAggregated(ctx context.Context, errc <-chan error, paths ...string) error {
	hc, err := e.apiserverClient()
	if err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-errc:
			return false, errors.Join(errors.New("adapter stopped"), err)
		default:
		}
		for _, p := range paths {
			if httpOK(hc, e.APIServerURL+p, adminToken)(ctx) != nil {
				return false, nil
			}
		}
		return true, nil
	})
}
