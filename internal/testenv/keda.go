package testenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
)

// KEDAModule is the Go module hack/build-keda.sh builds keda-operator and
// keda-adapter from; StartKEDA installs the CRDs of the same version from it.
const KEDAModule = "github.com/kedacore/keda/v2"

// kedaAdapterService names the Service the v1beta1.external.metrics.k8s.io
// APIService points at, as in KEDA's own manifests.
const kedaAdapterService = "keda-metrics-apiserver"

// KEDAOptions configures StartKEDA.
type KEDAOptions struct {
	// Namespace holds KEDA's cluster objects (KEDA_CLUSTER_OBJECT_NAMESPACE)
	// and the adapter's Service; it is created when missing. Default "keda".
	Namespace string
	// Adapter also starts keda-adapter and registers it as the
	// external.metrics.k8s.io APIService, so the HPAs KEDA creates read
	// their metric through it. It needs a non-loopback IPv4 address, like
	// MetricsServer.
	Adapter bool
}

// KEDA is a running KEDA: the operator watching every namespace, and the
// metrics adapter when asked for.
type KEDA struct {
	// Version is the KEDA release the cached binaries were built from.
	Version string
	// CRDDir is the module's config/crd/bases the CRDs were installed from.
	CRDDir string
	// Namespace holds KEDA's cluster objects.
	Namespace string
	// MetricsServiceAddr is the operator's gRPC metrics service (mutual
	// TLS), which the adapter reads metrics through.
	MetricsServiceAddr string

	env        *Env
	components []string
	// replaced is the external.metrics.k8s.io APIService the adapter took
	// over (e.g. Options.CustomMetrics'), put back by Stop.
	replaced *unstructured.Unstructured
}

// StartKEDA installs KEDA's CRDs from the module of the cached binaries'
// version, then starts keda-operator (and keda-adapter with o.Adapter)
// against the environment's apiserver and waits until they answer. It
// needs a control plane; Stop (or Env.Stop) ends the processes.
func (e *Env) StartKEDA(ctx context.Context, o KEDAOptions) (*KEDA, error) {
	if e.Kubeconfig == "" {
		return nil, errors.New("start KEDA: the environment has no apiserver")
	}
	if o.Namespace == "" {
		o.Namespace = "keda"
	}
	k, err := e.prepareKEDA(ctx, o.Namespace)
	if err != nil {
		return nil, err
	}
	var adapterIP net.IP
	if o.Adapter {
		if adapterIP, err = nonLoopbackIPv4(); err != nil {
			return nil, err
		}
	}
	certDir := filepath.Join(e.Dir, "keda-certs")
	if err := writeKEDACerts(certDir, o.Namespace, adapterIP); err != nil {
		return nil, err
	}
	if err := e.timed("keda-operator", func() error { return e.startKEDAOperator(ctx, k, certDir) }); err != nil {
		return nil, err
	}
	k.components = append(k.components, "keda-operator")
	if !o.Adapter {
		return k, nil
	}
	if err := e.timed("keda-adapter", func() error { return e.startKEDAAdapter(ctx, k, certDir, adapterIP) }); err != nil {
		return nil, err
	}
	k.components = append(k.components, "keda-adapter")
	return k, nil
}

// Stop ends KEDA's processes, adapter first, and gives
// external.metrics.k8s.io back to the APIService the adapter replaced. The
// CRDs stay (another StartKEDA reuses them).
func (k *KEDA) Stop() {
	for i := len(k.components) - 1; i >= 0; i-- {
		_ = k.env.StopComponent(k.components[i])
	}
	k.components = nil
	if k.replaced != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = k.env.replaceAPIService(ctx, k.replaced)
		k.replaced = nil
	}
}

// prepareKEDA finds the version of the cached binaries, installs the CRDs of
// that version and creates KEDA's namespace.
func (e *Env) prepareKEDA(ctx context.Context, ns string) (*KEDA, error) {
	version, err := kedaVersion(e.binDir)
	if err != nil {
		return nil, err
	}
	dir, err := moduleDir(ctx, KEDAModule, version)
	if err != nil {
		return nil, err
	}
	k := &KEDA{Version: version, CRDDir: filepath.Join(dir, "config", "crd", "bases"), Namespace: ns, env: e}
	if err := e.InstallCRDs(ctx, k.CRDDir); err != nil {
		return nil, fmt.Errorf("install KEDA %s CRDs: %w", version, err)
	}
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if _, err := e.Clientset.CoreV1().Namespaces().Create(ctx, nsObj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace %s: %w", ns, err)
	}
	return k, nil
}

// kedaVersion reads the version hack/build-keda.sh stamped next to the
// operator binary.
func kedaVersion(binDir string) (string, error) {
	if _, err := os.Stat(filepath.Join(binDir, "keda-operator")); err != nil {
		return "", fmt.Errorf("keda-operator is not in %s: run `make testbin` (hack/build-keda.sh)", binDir)
	}
	b, err := os.ReadFile(filepath.Join(binDir, ".keda-operator.version"))
	if err != nil {
		return "", fmt.Errorf("read keda-operator version stamp: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// moduleDir is the module cache directory of mod@version, downloading it
// when needed (hack/build-keda.sh already did on a machine with binaries).
func moduleDir(ctx context.Context, mod, version string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", mod+"@"+version)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w: %s", mod, version, err, stderr.String())
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("decode go mod download output: %w", err)
	}
	if info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: no directory (%s)", mod, version, info.Error)
	}
	return info.Dir, nil
}

// kedaEnv is the environment both KEDA processes read their settings from.
func (e *Env) kedaEnv(ns string) []string {
	return []string{
		"KUBECONFIG=" + e.Kubeconfig,
		// Empty: every namespace.
		"WATCH_NAMESPACE=",
		"KEDA_CLUSTER_OBJECT_NAMESPACE=" + ns,
		"POD_NAMESPACE=" + ns,
	}
}

// startKEDAOperator runs keda-operator on loopback ports with leader
// election, webhooks and certificate rotation off; its gRPC metrics service
// serves the certificates in certDir.
func (e *Env) startKEDAOperator(ctx context.Context, k *KEDA, certDir string) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	probe := fmt.Sprintf("127.0.0.1:%d", ports[1])
	k.MetricsServiceAddr = fmt.Sprintf("127.0.0.1:%d", ports[2])
	caDir := filepath.Join(e.Dir, "keda-custom-ca")
	if err := os.MkdirAll(caDir, 0o700); err != nil {
		return fmt.Errorf("keda custom CA dir: %w", err)
	}
	p, err := e.start("keda-operator", e.bin("keda-operator"), []string{
		"--metrics-bind-address=" + fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--health-probe-bind-address=" + probe,
		"--metrics-service-bind-address=" + k.MetricsServiceAddr,
		"--cert-dir=" + certDir,
		"--ca-dir=" + caDir,
		"--leader-elect=false",
		"--enable-cert-rotation=false",
		"--enable-webhook-patching=false",
		"--enable-apiservice-patching=false",
		"--kube-api-qps=100",
		"--kube-api-burst=200",
		"--zap-encoder=console",
		"--zap-log-level=info",
	}, e.kedaEnv(k.Namespace))
	if err != nil {
		return err
	}
	return p.waitFor(ctx, "ready", httpOK(http.DefaultClient, "http://"+probe+"/readyz", ""))
}

// startKEDAAdapter runs keda-adapter behind the aggregation layer. Like
// metrics-server it binds to a non-loopback address, because the aggregator
// rejects loopback endpoints; it serves the certificate in certDir, which
// the APIService pins through its CA bundle.
func (e *Env) startKEDAAdapter(ctx context.Context, k *KEDA, certDir string, ip net.IP) error {
	port, err := freePortOn(ip)
	if err != nil {
		return err
	}
	metricsPort, err := freePort()
	if err != nil {
		return err
	}
	p, err := e.start("keda-adapter", e.bin("keda-adapter"), []string{
		"--kubeconfig=" + e.Kubeconfig,
		"--lister-kubeconfig=" + e.Kubeconfig,
		"--authentication-kubeconfig=" + e.Kubeconfig,
		"--authorization-kubeconfig=" + e.Kubeconfig,
		"--bind-address=" + ip.String(),
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certDir,
		"--tls-cert-file=" + filepath.Join(certDir, "tls.crt"),
		"--tls-private-key-file=" + filepath.Join(certDir, "tls.key"),
		"--metrics-service-address=" + k.MetricsServiceAddr,
		"--port=" + strconv.Itoa(metricsPort),
		"--zap-encoder=console",
	}, e.kedaEnv(k.Namespace))
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(filepath.Join(certDir, "ca.crt"))
	if err != nil {
		return fmt.Errorf("read KEDA CA: %w", err)
	}
	if err := e.registerExternalMetricsAPI(ctx, k, ip, port, ca); err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.RESTConfig.CAData)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	return p.waitFor(ctx, "serving external.metrics.k8s.io", httpOK(hc, e.APIServerURL+"/apis/external.metrics.k8s.io/v1beta1", adminToken))
}

// registerExternalMetricsAPI creates the Service, its EndpointSlice and the
// APIService that route external.metrics.k8s.io to the adapter at ip:port.
func (e *Env) registerExternalMetricsAPI(ctx context.Context, k *KEDA, ip net.IP, port int, ca []byte) error {
	if err := e.routeToService(ctx, aggregatedService{Namespace: k.Namespace, Name: kedaAdapterService, IP: ip, Port: port}); err != nil {
		return err
	}
	return e.applyExternalMetricsAPIService(ctx, k, ca)
}

// applyExternalMetricsAPIService points external.metrics.k8s.io at the
// adapter, remembering the APIService it replaces in k.
func (e *Env) applyExternalMetricsAPIService(ctx context.Context, k *KEDA, ca []byte) error {
	ns := k.Namespace
	dyn, err := dynamic.NewForConfig(e.RESTConfig)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	old, err := dyn.Resource(apiServiceGVR).Get(ctx, "v1beta1.external.metrics.k8s.io", metav1.GetOptions{})
	switch {
	case err == nil:
		k.replaced = &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": old.GetAPIVersion(), "kind": old.GetKind(),
			"metadata": map[string]any{"name": old.GetName(), "labels": old.GetLabels()},
			"spec":     old.Object["spec"],
		}}
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("get external.metrics.k8s.io APIService: %w", err)
	}
	adapter := aggregatedService{Namespace: ns, Name: kedaAdapterService, CABundle: ca}
	return e.replaceAPIService(ctx, apiService(adapter, aggregatedAPI{Group: "external.metrics.k8s.io", Version: "v1beta1"}))
}

// replaceAPIService deletes the APIService of obj's name and creates obj.
func (e *Env) replaceAPIService(ctx context.Context, obj *unstructured.Unstructured) error {
	dyn, err := dynamic.NewForConfig(e.RESTConfig)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	api := dyn.Resource(apiServiceGVR)
	if err := api.Delete(ctx, obj.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete APIService %s: %w", obj.GetName(), err)
	}
	if _, err := api.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create APIService %s: %w", obj.GetName(), err)
	}
	return nil
}

// writeKEDACerts writes the files KEDA reads from its --cert-dir: ca.crt,
// and tls.crt/tls.key signed by it. KEDA uses the one pair for the
// operator's gRPC metrics server, the adapter's client of it (mutual TLS)
// and the adapter's API server, so the certificate both serves and
// authenticates, for loopback, the adapter's address (when not nil) and
// the adapter Service's DNS name.
func writeKEDACerts(dir, ns string, adapterIP net.IP) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("KEDA cert dir: %w", err)
	}
	ca, err := newCA("swell-testenv-keda-ca")
	if err != nil {
		return err
	}
	ips := []net.IP{net.ParseIP("127.0.0.1")}
	if adapterIP != nil {
		ips = append(ips, adapterIP)
	}
	svc := kedaAdapterService + "." + ns + ".svc"
	cert, key, err := ca.sign(leaf{
		cn:    "keda-testenv",
		dns:   []string{"localhost", svc, svc + ".cluster.local"},
		ips:   ips,
		usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return err
	}
	return writeFiles(map[string][]byte{
		filepath.Join(dir, "ca.crt"):  ca.pem,
		filepath.Join(dir, "tls.crt"): cert,
		filepath.Join(dir, "tls.key"): key,
	})
}
