package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The listener suite starts each `swell` binary with its default listen
// addresses and checks every listener answers only as docs/install.md
// ("Listeners and RBAC") says: loopback-only listeners refuse connections
// on the host's other address, and listeners that must be reachable
// require authentication where documented.

// hostAddress is a non-loopback IPv4 address of this host: a peer on the
// network reaches listeners there.
func hostAddress(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil && !ipn.IP.IsLinkLocalUnicast() {
			return ipn.IP.String()
		}
	}
	t.Fatal("this host has no non-loopback IPv4 address to probe listeners from")
	return ""
}

// requirePortsFree fails early, naming the port, when a default port is
// taken by something else on this host.
func requirePortsFree(t *testing.T, ports ...int) {
	t.Helper()
	for _, p := range ports {
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			t.Fatalf("default port %d is in use on this host: %v", p, err)
		}
		_ = l.Close()
	}
}

// waitListening waits until addr accepts TCP connections or the process exits.
func waitListening(ctx context.Context, t *testing.T, p *swellProcess, addr string) {
	t.Helper()
	waitFor(ctx, t, addr+" to listen", func() (bool, error) {
		select {
		case <-p.done:
			t.Fatalf("process exited (%v) before %s listened:\n%s", p.exitErr, addr, p.logTail())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false, err
		}
		_ = c.Close()
		return true, nil
	})
}

// stopSwell ends a process with SIGTERM and waits for it, so the next
// subtest can bind the same default ports.
func stopSwell(t *testing.T, p *swellProcess) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(45 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// assertRefused checks nothing accepts connections on addr.
func assertRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		_ = c.Close()
		t.Errorf("%s accepted a connection; want it refused (loopback-only listener)", addr)
		return
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("%s: %v; want connection refused", addr, err)
	}
}

// httpGet returns the status and body of a GET with an optional bearer token.
func httpGet(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the metrics server's self-signed certificate
	}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// serviceAccountToken creates a ServiceAccount in ns and returns a
// TokenRequest token for it.
func serviceAccountToken(ctx context.Context, t *testing.T, ns, name string) string {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if _, err := env.Clientset.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := env.Clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptrInt64(600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

func ptrInt64(v int64) *int64 { return &v }

// grantMetricsReader lets ns/name get the /metrics non-resource URL, as a
// Prometheus ServiceAccount would be allowed.
func grantMetricsReader(ctx context.Context, t *testing.T, ns, name string) {
	t.Helper()
	cr := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-metrics-reader"},
		Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
	}
	if _, err := env.Clientset.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: cr.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
	}
	if _, err := env.Clientset.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Clientset.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
		_ = env.Clientset.RbacV1().ClusterRoles().Delete(context.Background(), cr.Name, metav1.DeleteOptions{})
	})
}

// TestControllerListeners: with defaults, /metrics answers on loopback
// only and the probes on every interface; bound off loopback, /metrics
// refuses anonymous and unauthorized callers (over HTTP and HTTPS) and
// serves a token allowed to get /metrics. The controller runs as a
// ServiceAccount with config/rbac's ClusterRole only, so the TokenReview
// and SubjectAccessReview rules are the shipped ones.
func TestControllerListeners(t *testing.T) {
	startController(t) // CRDs
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	bin := buildSwell(t)
	host := hostAddress(t)
	user := grantControllerRBAC(ctx, t, ns, "swell-listeners")[0]
	kubeconfig := impersonatingKubeconfig(t, user)
	base := []string{"controller", "--kubeconfig", kubeconfig, "--namespace", ns, "--node-pools=false", "--dev-logs"}

	t.Run("defaults", func(t *testing.T) {
		requirePortsFree(t, 8080, 8081)
		p := startSwell(t, bin, "listeners-controller-defaults", base...)
		defer stopSwell(t, p)
		waitListening(ctx, t, p, "127.0.0.1:8080")
		waitListening(ctx, t, p, "127.0.0.1:8081")
		if code, body := httpGet(t, "GET", "http://127.0.0.1:8080/metrics", ""); code != 200 || !strings.Contains(body, "controller_runtime_") {
			t.Errorf("loopback /metrics: %d", code)
		}
		assertRefused(t, host+":8080")
		for _, addr := range []string{"127.0.0.1:8081", host + ":8081"} {
			if code, body := httpGet(t, "GET", "http://"+addr+"/readyz", ""); code != 200 || body != "ok" {
				t.Errorf("probe %s/readyz: %d %q, want 200 ok (kubelet probes the pod IP)", addr, code, body)
			}
		}
	})

	scraper := serviceAccountToken(ctx, t, ns, "prometheus")
	grantMetricsReader(ctx, t, ns, "prometheus")
	stranger := serviceAccountToken(ctx, t, ns, "stranger")
	for _, secure := range []bool{false, true} {
		name, scheme := "off-loopback-http", "http"
		if secure {
			name, scheme = "off-loopback-https", "https"
		}
		t.Run(name, func(t *testing.T) {
			port := chartFreePort(t)
			args := append(append([]string{}, base...), fmt.Sprintf("--metrics-bind-address=:%d", port), "--health-probe-bind-address=0", fmt.Sprintf("--metrics-secure=%v", secure))
			p := startSwell(t, bin, "listeners-controller-"+name, args...)
			defer stopSwell(t, p)
			waitListening(ctx, t, p, fmt.Sprintf("%s:%d", host, port))
			url := fmt.Sprintf("%s://%s:%d/metrics", scheme, host, port)
			for _, tc := range []struct {
				who, token string
				want       int
			}{
				{"anonymous", "", http.StatusUnauthorized},
				{"an invalid token", "not-a-token", http.StatusUnauthorized},
				{"a ServiceAccount without get on /metrics", stranger, http.StatusForbidden},
				{"a ServiceAccount allowed to get /metrics", scraper, http.StatusOK},
			} {
				code, body := httpGet(t, "GET", url, tc.token)
				t.Logf("%s /metrics, %s: %d", scheme, tc.who, code)
				if code != tc.want {
					t.Errorf("%s: %d %.200q, want %d", tc.who, code, body, tc.want)
				}
				if code == http.StatusOK && !strings.Contains(body, "controller_runtime_") {
					t.Errorf("%s: 200 without controller metrics", tc.who)
				}
				if code != http.StatusOK && strings.Contains(body, "controller_runtime_") {
					t.Errorf("%s: %d but the body carries metrics", tc.who, code)
				}
			}
		})
	}
}

// TestCPAListeners: with defaults the REST API, metrics and probes answer
// on loopback and refuse the host's other address; with a token the API
// refuses requests without it; bound off loopback without a token, the
// start-up log warns.
func TestCPAListeners(t *testing.T) {
	startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	bin := buildSwell(t)
	host := hostAddress(t)
	createCPADeployment(ctx, t, ns, "web", 1, "")
	dir := t.TempDir()
	config := filepath.Join(dir, "config.yaml")
	writeFile(t, config, fmt.Sprintf(`scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
namespace: %s
runMode: per-resource
interval: 3600000
minReplicas: 1
maxReplicas: 5
metric:
  type: shell
  shell: {entrypoint: /bin/sh, command: ["-c", "cat >/dev/null; echo 3"]}
evaluate:
  type: shell
  shell: {entrypoint: /bin/sh, command: ["-c", "cat >/dev/null; echo '{\"targetReplicas\": 3}'"]}
`, ns))
	base := []string{"cpa", "--config", config, "--kubeconfig", env.Kubeconfig}

	t.Run("defaults", func(t *testing.T) {
		requirePortsFree(t, 5000, 8080, 8081)
		p := startSwell(t, bin, "listeners-cpa-defaults", base...)
		defer stopSwell(t, p)
		for _, port := range []int{5000, 8080, 8081} {
			waitListening(ctx, t, p, fmt.Sprintf("127.0.0.1:%d", port))
			assertRefused(t, fmt.Sprintf("%s:%d", host, port))
		}
		if code, body := httpGet(t, "GET", "http://127.0.0.1:5000/api/v1/metrics?dry_run=true", ""); code != 200 || !strings.Contains(body, `"value":"3`) {
			t.Errorf("loopback REST API without a token configured: %d %s", code, body)
		}
		if code, _ := httpGet(t, "GET", "http://127.0.0.1:8080/metrics", ""); code != 200 {
			t.Errorf("loopback /metrics: %d", code)
		}
		if code, _ := httpGet(t, "GET", "http://127.0.0.1:8081/healthz", ""); code != 200 {
			t.Errorf("loopback /healthz: %d", code)
		}
		if strings.Contains(p.log(), "level=WARN") {
			t.Errorf("a loopback-only start warned:\n%s", p.logTail())
		}
	})

	t.Run("token off loopback", func(t *testing.T) {
		tokenFile := filepath.Join(dir, "token")
		writeFile(t, tokenFile, "cpa-api-token\n")
		port := chartFreePort(t)
		p := startSwellEnv(t, bin, "listeners-cpa-token",
			[]string{fmt.Sprintf(`apiConfig={"enabled": true, "host": "0.0.0.0", "port": %d}`, port)},
			append(append([]string{}, base...), "--api-token-file", tokenFile, "--metrics-bind-address=0", "--health-probe-bind-address=0")...)
		defer stopSwell(t, p)
		waitListening(ctx, t, p, fmt.Sprintf("%s:%d", host, port))
		for _, tc := range []struct {
			who, addr, token string
			want             int
		}{
			{"a peer without the token", host, "", http.StatusUnauthorized},
			{"loopback without the token", "127.0.0.1", "", http.StatusUnauthorized},
			{"a wrong token", host, "cpa-api-tokem", http.StatusUnauthorized},
			{"the token", host, "cpa-api-token", http.StatusOK},
		} {
			code, body := httpGet(t, "POST", fmt.Sprintf("http://%s:%d/api/v1/evaluation?dry_run=true", tc.addr, port), tc.token)
			t.Logf("REST API, %s: %d", tc.who, code)
			if code != tc.want {
				t.Errorf("%s: %d %s, want %d", tc.who, code, body, tc.want)
			}
		}
		if replicas := replicasOf(ctx, t, ns, "web"); replicas != 1 {
			t.Errorf("web has %d replicas; dry runs and refused calls must not scale", replicas)
		}
		if !strings.Contains(p.log(), "over plain HTTP") {
			t.Errorf("no plaintext warning for a token over HTTP off loopback:\n%s", p.logTail())
		}
	})

	t.Run("open off loopback warns", func(t *testing.T) {
		port := chartFreePort(t)
		p := startSwellEnv(t, bin, "listeners-cpa-open",
			[]string{fmt.Sprintf(`apiConfig={"enabled": true, "host": "0.0.0.0", "port": %d}`, port)},
			append(append([]string{}, base...), "--metrics-bind-address=0", "--health-probe-bind-address=0")...)
		defer stopSwell(t, p)
		waitListening(ctx, t, p, fmt.Sprintf("%s:%d", host, port))
		if !strings.Contains(p.log(), "WITHOUT authentication") {
			t.Errorf("no warning for an unauthenticated API off loopback:\n%s", p.logTail())
		}
	})
}

// TestExternalScalerListeners: with defaults, gRPC listens on every
// interface (KEDA dials it) and warns that it is plaintext; /metrics and
// /healthz answer on loopback only.
func TestExternalScalerListeners(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bin := buildSwell(t)
	host := hostAddress(t)
	requirePortsFree(t, 8090, 9090)
	p := startSwell(t, bin, "listeners-external-scaler", "external-scaler", "--secrets-dir", t.TempDir())
	defer stopSwell(t, p)
	waitListening(ctx, t, p, "127.0.0.1:9090")
	waitListening(ctx, t, p, host+":8090")
	assertRefused(t, host+":9090")
	if code, _ := httpGet(t, "GET", "http://127.0.0.1:9090/healthz", ""); code != 200 {
		t.Errorf("loopback /healthz: %d", code)
	}
	if !strings.Contains(p.log(), "PLAINTEXT gRPC") {
		t.Errorf("no plaintext warning:\n%s", p.logTail())
	}
}

// startSwellEnv is startSwell with extra environment variables.
func startSwellEnv(t *testing.T, bin, name string, extraEnv []string, args ...string) *swellProcess {
	t.Helper()
	return startSwellWith(t, bin, name, append(os.Environ(), extraEnv...), args...)
}

// TestNodePoolListeners: `swell nodepool` serves /metrics and /healthz on
// loopback only by default. The pool is empty and asks for no buffer, so
// the kwok provider creates no node in the shared cluster.
func TestNodePoolListeners(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bin := buildSwell(t)
	host := hostAddress(t)
	requirePortsFree(t, 8080)
	config := filepath.Join(t.TempDir(), "nodepool.yaml")
	writeFile(t, config, fmt.Sprintf(`cloud-provider: kwok
node-pool-name: listeners
node-selector: "swell.dev/pool=listeners-test"
cluster-kube-config-path: %s
minimum-node-pool-size: 0
maximum-node-pool-size: 1
server-pod-label-name: app
server-pod-label-value: listeners-test-none
buffer-slot-size: 0
scale-loop-tick-sec: 5
server-cpu-resource-request: 1000
`, env.Kubeconfig))
	p := startSwell(t, bin, "listeners-nodepool", "nodepool", "--config", config)
	defer stopSwell(t, p)
	waitListening(ctx, t, p, "127.0.0.1:8080")
	assertRefused(t, host+":8080")
	if code, body := httpGet(t, "GET", "http://127.0.0.1:8080/metrics", ""); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("loopback /metrics: %d", code)
	}
}
