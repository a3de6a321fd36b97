package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// metricsServerNamespace and metricsServerName name the Service the
// v1beta1.metrics.k8s.io APIService points at.
const (
	metricsServerNamespace = "kube-system"
	metricsServerName      = "metrics-server"
)

var apiServiceGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// startMetricsServer runs metrics-server behind the apiserver's aggregation
// layer and waits until GET /apis/metrics.k8s.io/v1beta1/nodes answers. It
// scrapes every node's kubelet port from the node status; the process node
// serves /metrics/resource there, kwok nodes serve nothing and are skipped.
//
// The aggregator reaches an extension apiserver through the endpoints of a
// Service, and loopback addresses are not valid endpoints, so metrics-server
// binds to this machine's first non-loopback IPv4 address.
func (e *Env) startMetricsServer(ctx context.Context) error {
	ip, err := nonLoopbackIPv4()
	if err != nil {
		return err
	}
	port, err := freePortOn(ip)
	if err != nil {
		return err
	}
	certDir := filepath.Join(e.Dir, "metrics-server-certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return fmt.Errorf("metrics-server cert dir: %w", err)
	}
	p, err := e.start("metrics-server", e.bin("metrics-server"), []string{
		"--kubeconfig=" + e.Kubeconfig,
		"--authentication-kubeconfig=" + e.Kubeconfig,
		"--authorization-kubeconfig=" + e.Kubeconfig,
		"--bind-address=" + ip.String(),
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certDir,
		// The process node's kubelet endpoint has a self-signed cert.
		"--kubelet-insecure-tls",
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-use-node-status-port",
		// The smallest resolution metrics-server accepts; it must exceed
		// the kubelet request timeout.
		"--metric-resolution=10s",
		"--kubelet-request-timeout=5s",
		"--v=1",
	}, nil)
	if err != nil {
		return err
	}
	svc := aggregatedService{Namespace: metricsServerNamespace, Name: metricsServerName, IP: ip, Port: port}
	if err := e.registerAggregatedAPI(ctx, svc, aggregatedAPI{Group: "metrics.k8s.io", Version: "v1beta1"}); err != nil {
		return err
	}
	hc, err := e.apiserverClient()
	if err != nil {
		return err
	}
	return p.waitFor(ctx, "serving metrics.k8s.io", httpOK(hc, e.APIServerURL+"/apis/metrics.k8s.io/v1beta1/nodes", adminToken))
}

// nonLoopbackIPv4 is the first IPv4 address of an up, non-loopback
// interface.
func nonLoopbackIPv4() (net.IP, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if ip4 := ipn.IP.To4(); ip4 != nil && !ip4.IsLoopback() && !ip4.IsLinkLocalUnicast() {
				return ip4, nil
			}
		}
	}
	return nil, errors.New("metrics-server needs a non-loopback IPv4 address (the aggregator rejects loopback endpoints), and this machine has none")
}

// freePortOn asks the kernel for an unused TCP port on ip.
func freePortOn(ip net.IP) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		return 0, fmt.Errorf("find free port on %s: %w", ip, err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
