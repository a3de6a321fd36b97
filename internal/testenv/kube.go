package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// adminToken authenticates the test clients as a member of system:masters.
// It only ever guards a loopback apiserver that lives as long as one test run.
const adminToken = "swell-testenv-admin-token"

// startEtcd runs a single-member etcd on two free loopback ports.
func (e *Env) startEtcd(ctx context.Context) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	dataDir := filepath.Join(e.Dir, "etcd-data")
	p, err := e.start("etcd", e.bin("etcd"), []string{
		"--name=swell-testenv",
		"--data-dir=" + dataDir,
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=swell-testenv=" + peer,
		"--unsafe-no-fsync",
		"--log-level=warn",
	}, nil)
	if err != nil {
		return err
	}
	e.EtcdURL = client
	return p.waitFor(ctx, "healthy", httpOK(http.DefaultClient, client+"/health", ""))
}

// startAPIServer runs kube-apiserver against the environment's etcd with
// token authentication, RBAC and a CA-signed serving certificate.
func (e *Env) startAPIServer(ctx context.Context, pk *pki) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	tokens := filepath.Join(e.Dir, "tokens.csv")
	line := adminToken + ",swell-admin,swell-admin-uid,system:masters\n"
	if err := os.WriteFile(tokens, []byte(line), 0o600); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	p, err := e.start("kube-apiserver", e.bin("kube-apiserver"), []string{
		"--etcd-servers=" + e.EtcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + pk.servingCert,
		"--tls-private-key-file=" + pk.servingKey,
		"--client-ca-file=" + pk.caCert,
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + pk.saPub,
		"--service-account-signing-key-file=" + pk.saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		// Loopback addresses are not valid endpoints of the kubernetes Service.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		// On top of the default plugins: owner references with
		// blockOwnerDeletion need update on the owner's finalizers (as on
		// OpenShift), so the suite proves the controllers' RBAC grants it.
		"--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
		// The aggregation layer, so extension apiservers (metrics-server)
		// can serve under this apiserver. Costs nothing when none is
		// registered.
		"--requestheader-client-ca-file=" + pk.frontProxyCA,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + pk.frontProxyCert,
		"--proxy-client-key-file=" + pk.frontProxyKey,
		"--enable-aggregator-routing=true",
		"--profiling=false",
		"--v=1",
	}, nil)
	if err != nil {
		return err
	}
	e.APIServerURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	e.RESTConfig = &rest.Config{
		Host:            e.APIServerURL,
		BearerToken:     adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: pk.caPEM},
		QPS:             200,
		Burst:           400,
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pk.caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	if err := p.waitFor(ctx, "ready", httpOK(hc, e.APIServerURL+"/readyz", adminToken)); err != nil {
		return err
	}
	e.Kubeconfig = filepath.Join(e.Dir, "kubeconfig")
	if err := writeKubeconfig(e.Kubeconfig, e.APIServerURL, pk.caPEM, adminToken); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(e.RESTConfig)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	e.Clientset = cs
	return nil
}

// startControllerManager runs kube-controller-manager with every controller
// but node IPAM and service-account tokens, which a loopback cluster without
// pod networking does not need. Node lifecycle stays on, or nodes keep their
// not-ready taint.
func (e *Env) startControllerManager(ctx context.Context, pk *pki) error {
	p, err := e.start("kube-controller-manager", e.bin("kube-controller-manager"), []string{
		"--kubeconfig=" + e.Kubeconfig,
		"--controllers=*,-nodeipam,-serviceaccount-token",
		"--root-ca-file=" + pk.caCert,
		"--service-account-private-key-file=" + pk.saKey,
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=false",
		"--concurrent-deployment-syncs=10",
		"--concurrent-replicaset-syncs=10",
		"--v=1",
	}, nil)
	if err != nil {
		return err
	}
	return p.waitFor(ctx, "running", serviceAccountExists(e.Clientset, "default", "default"))
}

// startScheduler runs kube-scheduler; readiness is its leader-less start,
// confirmed by the process staying up while the API answers.
func (e *Env) startScheduler(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	p, err := e.start("kube-scheduler", e.bin("kube-scheduler"), []string{
		"--kubeconfig=" + e.Kubeconfig,
		"--authentication-kubeconfig=" + e.Kubeconfig,
		"--authorization-kubeconfig=" + e.Kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--v=1",
	}, nil)
	if err != nil {
		return err
	}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed loopback health endpoint
	return p.waitFor(ctx, "healthy", httpOK(insecure, fmt.Sprintf("https://127.0.0.1:%d/healthz", port), ""))
}

func writeKubeconfig(path, server string, ca []byte, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["swell-testenv"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["swell-admin"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["swell-testenv"] = &clientcmdapi.Context{Cluster: "swell-testenv", AuthInfo: "swell-admin"}
	cfg.CurrentContext = "swell-testenv"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// httpOK returns a readiness check that expects 200 from url.
func httpOK(hc *http.Client, url, token string) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

func serviceAccountExists(cs kubernetes.Interface, ns, name string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
		return err
	}
}
