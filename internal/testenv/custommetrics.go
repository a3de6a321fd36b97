package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
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

// writeServingCert writes a self-signed serving certificate for host and
// ip into dir and returns its PEM (the CA bundle clients pin) and the
// certificate and key files.
func writeServingCert(dir, host string, ip net.IP) (caPEM []byte, certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", "", fmt.Errorf("generate serving key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: host},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{host},
		IPAddresses:           []net.IP{ip},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, "", "", fmt.Errorf("self-sign serving cert: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, "", "", fmt.Errorf("marshal serving key: %w", err)
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, caPEM, 0o600); err != nil {
		return nil, "", "", fmt.Errorf("write %s: %w", certFile, err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, "", "", fmt.Errorf("write %s: %w", keyFile, err)
	}
	return caPEM, certFile, keyFile, nil
}
