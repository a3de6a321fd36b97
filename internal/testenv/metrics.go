package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"
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
	if err := e.registerMetricsAPI(ctx, ip, port); err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.RESTConfig.CAData)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	return p.waitFor(ctx, "serving metrics.k8s.io", httpOK(hc, e.APIServerURL+"/apis/metrics.k8s.io/v1beta1/nodes", adminToken))
}

// registerMetricsAPI creates the Service, its EndpointSlice and the
// APIService that route metrics.k8s.io to metrics-server at ip:port.
func (e *Env) registerMetricsAPI(ctx context.Context, ip net.IP, port int) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: metricsServerName, Namespace: metricsServerNamespace},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(int32(port)),
		}}},
	}
	if _, err := e.Clientset.CoreV1().Services(metricsServerNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create metrics-server service: %w", err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: metricsServerName, Namespace: metricsServerNamespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: metricsServerName,
				discoveryv1.LabelManagedBy:   "swell-testenv",
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{ip.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	if _, err := e.Clientset.DiscoveryV1().EndpointSlices(metricsServerNamespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create metrics-server endpoint slice: %w", err)
	}
	dyn, err := dynamic.NewForConfig(e.RESTConfig)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	apiService := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]any{"name": "v1beta1.metrics.k8s.io"},
		"spec": map[string]any{
			"group":   "metrics.k8s.io",
			"version": "v1beta1",
			"service": map[string]any{"namespace": metricsServerNamespace, "name": metricsServerName, "port": int64(443)},
			// Test environment only: metrics-server serves a certificate it
			// generated itself at start, so there is no CA to pin here.
			"insecureSkipTLSVerify": true,
			"groupPriorityMinimum":  int64(100),
			"versionPriority":       int64(100),
		},
	}}
	if _, err := dyn.Resource(apiServiceGVR).Create(ctx, apiService, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create metrics.k8s.io APIService: %w", err)
	}
	return nil
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
