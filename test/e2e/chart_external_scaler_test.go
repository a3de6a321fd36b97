package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/swell-autoscaler/swell/internal/procnode"
	"github.com/swell-autoscaler/swell/internal/testenv"
	pb "github.com/swell-autoscaler/swell/pkg/externalscaler/proto"
)

// The chart's external scaler, installed as an operator would: the chart
// is rendered with externalScaler.enabled and mutual TLS from a Secret,
// applied to the real apiserver, and its Deployment's pod runs Swell's
// image on a process node. Clients reach it only by the Service's DNS
// name, through serviceProxy: an HTTP CONNECT proxy that resolves
// <service>.<namespace>[.svc[.cluster.local]]:<port> the way cluster DNS and
// kube-proxy would, from the Service and the EndpointSlices the real
// endpointslice controller wrote for it. gRPC (grpc-go, in this test and in
// KEDA) honours HTTPS_PROXY and leaves the name to the proxy.

const (
	esRelease   = "swell"
	esNamespace = "swell-system"
	esService   = "swell-external-scaler"
	esTLSSecret = "swell-external-scaler-tls"
	esHost      = esService + "." + esNamespace + ".svc"
)

// chartScaler is an installed chart external scaler.
type chartScaler struct {
	e           *testenv.Env
	node        *procnode.Node
	pki         scalerPKI
	proxy       *serviceProxy
	addr        string // the Service's DNS name and port
	metricsPort int
	pod         *corev1.Pod
}

// installChartScaler builds the image, starts an environment with a
// process node (and, with kwok, a kwok node for scaled workloads), and
// installs the chart with the external scaler on mutual TLS.
func installChartScaler(ctx context.Context, t *testing.T, kwok bool) *chartScaler {
	t.Helper()
	archive := buildChartImage(ctx, t)
	opts := testenv.Options{APIServer: true, ControllerManager: true, Scheduler: true, Redis: true}
	if kwok {
		opts.KwokNodes = []testenv.NodeSpec{{Name: "es-kwok-0"}}
	}
	e := testenv.New(t, opts)
	s := &chartScaler{e: e, node: startImageNode(ctx, t, e, archive, hostAddress(t)), pki: newScalerPKI(t, esHost)}

	// The TLS Secret, as cert-manager would write it.
	if _, err := e.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: esNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: esTLSSecret, Namespace: esNamespace},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": s.pki.serverCert, "tls.key": s.pki.serverKey, "ca.crt": s.pki.ca},
	}
	if _, err := e.Clientset.CoreV1().Secrets(esNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	grpcPort := chartFreePort(t)
	s.metricsPort = chartFreePort(t)
	mountPath := filepath.Join(t.TempDir(), "tls")
	crds, objs := renderChart(t, esRelease, esNamespace, map[string]any{
		"image":     map[string]any{"repository": "ghcr.io/swell-autoscaler/swell", "tag": "e2e", "pullPolicy": "Never"},
		"replicas":  0, // the controller is not under test here
		"nodePools": map[string]any{"enabled": false},
		"externalScaler": map[string]any{
			"enabled": true,
			// The process node shares the host's network: free host ports.
			"grpcPort": grpcPort, "metricsPort": s.metricsPort,
			"pollInterval": "200ms",
			// The test's Redis listens on loopback, which the scaler's
			// egress policy refuses unless allowed.
			"egressAllow": []any{"127.0.0.1/32"},
			"tls": map[string]any{
				"secretName": esTLSSecret, "clientCA": map[string]any{"enabled": true},
				"mountPath": mountPath,
			},
			"nodeSelector": map[string]any{corev1.LabelHostname: s.node.Name()},
			"tolerations":  []any{map[string]any{"key": procnode.Taint, "operator": "Exists", "effect": "NoSchedule"}},
		},
	})
	dep := renderedDeployment(t, objs, esService)
	// procnode runs no volume plugins: put the projected volume's files
	// where the chart mounts them, from the Secrets as the apiserver
	// serves them, before the pod starts.
	materializeProjectedSecrets(ctx, t, e, dep)
	installChart(ctx, t, e, esRelease, esNamespace, crds, objs)

	s.pod = waitForReadyScaler(ctx, t, e, s.node)
	t.Logf("external scaler pod %s Ready on %s (readiness: tcpSocket on the gRPC port %d)", s.pod.Name, s.pod.Spec.NodeName, grpcPort)
	assertNoKubeCredentials(t, s.pod, e)
	waitServiceEndpoint(ctx, t, e, esNamespace, esService, "grpc", grpcPort)

	s.proxy = startServiceProxy(t, e)
	svc, err := e.Clientset.CoreV1().Services(esNamespace).Get(ctx, esService, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range svc.Spec.Ports {
		if p.Name == "grpc" {
			s.addr = net.JoinHostPort(esHost, strconv.Itoa(int(p.Port)))
		}
	}
	if s.addr == "" {
		t.Fatalf("Service %s has no grpc port: %+v", esService, svc.Spec.Ports)
	}
	return s
}

// TestChartExternalScalerServesThroughService installs the chart's external
// scaler on mutual TLS and calls it by the Service's name: the TLS wiring
// (Secret → projected volume → --tls-* flags) serves a certificate for the
// Service's DNS name, a client certificate signed by the Secret's ca.crt is
// required, and the scaler answers KEDA's rpcs from a Redis list.
func TestChartExternalScalerServesThroughService(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Minute)
	defer cancel()
	s := installChartScaler(ctx, t, false)

	conn := s.dial(t, s.pki.clientTLS(t))
	rpcCtx, rpcCancel := context.WithTimeout(ctx, time.Minute)
	defer rpcCancel()
	health, err := healthpb.NewHealthClient(conn).Check(rpcCtx, &healthpb.HealthCheckRequest{Service: "externalscaler.ExternalScaler"})
	if err != nil || health.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health through %s = %v, %v", s.addr, health, err)
	}
	client := pb.NewExternalScalerClient(conn)
	list := "chart-scaler-jobs"
	md := map[string]string{"source": "redis", "address": s.e.RedisAddr, "listName": list, "targetSize": "5"}
	ref := &pb.ScaledObjectRef{Name: "worker", Namespace: "app", ScalerMetadata: md}
	spec, err := client.GetMetricSpec(rpcCtx, ref)
	if err != nil || len(spec.MetricSpecs) != 1 || spec.MetricSpecs[0].TargetSizeFloat != 5 {
		t.Fatalf("GetMetricSpec = %v, %v", spec, err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: s.e.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.RPush(ctx, list, "a", "b", "c", "d", "e", "f", "g").Err(); err != nil {
		t.Fatal(err)
	}
	waitWithin(ctx, t, time.Minute, "GetMetrics = 7 through the Service", func(ctx context.Context) (bool, error) {
		r, err := client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: spec.MetricSpecs[0].MetricName})
		if err != nil {
			return false, err
		}
		if len(r.MetricValues) != 1 {
			return false, fmt.Errorf("%d values", len(r.MetricValues))
		}
		return r.MetricValues[0].MetricValueFloat == 7, fmt.Errorf("value %v", r.MetricValues[0].MetricValueFloat)
	})
	active, err := client.IsActive(rpcCtx, ref)
	if err != nil || !active.Result {
		t.Fatalf("IsActive with 7 queued = %v, %v", active, err)
	}
	t.Logf("through %s (mTLS): health SERVING, metric %s target 5, value 7, active", s.addr, spec.MetricSpecs[0].MetricName)

	// Mutual TLS is enforced: no client certificate, a certificate from
	// another CA, or plaintext are all refused before any rpc is served.
	before := s.scraped(t, `swell_external_scaler_requests_total{code="OK",rpc="GetMetricSpec"}`)
	if before < 1 {
		t.Fatalf("the scaler's /metrics shows %v served GetMetricSpec calls, want the one above", before)
	}
	for name, creds := range map[string]credentials.TransportCredentials{
		"no client certificate":       credentials.NewTLS(s.pki.clientTLSWithout(t)),
		"client certificate, foreign": credentials.NewTLS(s.pki.foreignClientTLS(t)),
		"plaintext":                   insecure.NewCredentials(),
	} {
		c := s.dialCreds(t, creds)
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := pb.NewExternalScalerClient(c).GetMetricSpec(cctx, ref)
		ccancel()
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: GetMetricSpec err = %v, want the connection refused (Unavailable)", name, err)
		} else {
			t.Logf("%s: refused (%v)", name, err)
		}
	}
	if after := s.scraped(t, `swell_external_scaler_requests_total{code="OK",rpc="GetMetricSpec"}`); after != before {
		t.Errorf("refused clients were served: GetMetricSpec OK went %v → %v", before, after)
	}
	t.Logf("proxy tunnels to %s: %d", esService, s.proxy.tunnels(esNamespace, esService))
}

// TestChartExternalScalerServesKEDA installs the chart's external scaler
// on mutual TLS, starts KEDA's real operator, and has a ScaledObject whose
// trigger names the chart's Service (scalerAddress
// swell-external-scaler.swell-system.svc:8090, client certificate from a
// TriggerAuthentication) scale a Deployment 0 → 1 → 0 on a Redis list.
func TestChartExternalScalerServesKEDA(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	s := installChartScaler(ctx, t, true)

	// KEDA's processes inherit this; loopback (its apiserver) is never
	// proxied, the Service's name is.
	t.Setenv("HTTPS_PROXY", "http://"+s.proxy.addr)
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	keda, err := s.e.StartKEDA(ctx, testenv.KEDAOptions{})
	if err != nil {
		t.Fatalf("start KEDA: %v", err)
	}
	t.Cleanup(keda.Stop)
	t.Logf("KEDA %s", keda.Version)

	const ns, name = "app", "worker"
	cs := s.e.Clientset
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](0),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// KEDA's client certificate for the scaler's mutual TLS.
	clientCert, clientKey := s.pki.clientPEM(t)
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "swell-scaler-client"},
		Data:       map[string][]byte{"ca.crt": s.pki.ca, "tls.crt": clientCert, "tls.key": clientKey},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(s.e.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	auth := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication",
		"metadata": map[string]any{"name": "swell-scaler-mtls", "namespace": ns},
		"spec": map[string]any{"secretTargetRef": []any{
			map[string]any{"parameter": "caCert", "name": "swell-scaler-client", "key": "ca.crt"},
			map[string]any{"parameter": "tlsClientCert", "name": "swell-scaler-client", "key": "tls.crt"},
			map[string]any{"parameter": "tlsClientKey", "name": "swell-scaler-client", "key": "tls.key"},
		}},
	}}
	triggerAuths := schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "triggerauthentications"}
	if _, err := dyn.Resource(triggerAuths).Namespace(ns).Create(ctx, auth, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	list := "keda-chart-jobs"
	so := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"scaleTargetRef":  map[string]any{"name": name},
			"pollingInterval": int64(1),
			"cooldownPeriod":  int64(5),
			"minReplicaCount": int64(0),
			"maxReplicaCount": int64(5),
			"triggers": []any{map[string]any{
				"type":              "external",
				"authenticationRef": map[string]any{"name": "swell-scaler-mtls"},
				"metadata": map[string]any{
					"scalerAddress": s.addr,
					"source":        "redis", "address": s.e.RedisAddr, "listName": list, "targetSize": "5",
				},
			}},
		},
	}}
	sos := dyn.Resource(scaledObjectGVR).Namespace(ns)
	if _, err := sos.Create(ctx, so, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	condition := func(typ, want string) {
		t.Helper()
		waitWithin(ctx, t, 2*time.Minute, fmt.Sprintf("ScaledObject %s=%s", typ, want), func(ctx context.Context) (bool, error) {
			return scaledObjectCondition(ctx, sos, name, typ, want)
		})
	}
	replicas := func(want int32) {
		t.Helper()
		waitWithin(ctx, t, 2*time.Minute, fmt.Sprintf("Deployment %s at %d replicas", name, want), func(ctx context.Context) (bool, error) {
			d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return ptr.Deref(d.Spec.Replicas, 1) == want, nil
		})
	}

	// Accepted: KEDA read the metric spec from the chart's scaler and made
	// its HPA; idle while the list is empty.
	condition("Ready", "True")
	hpa := waitHPA(ctx, t, s.e, ns, "keda-hpa-"+name)
	t.Logf("KEDA HPA %s reads external metric %s", hpa.Name, hpa.Spec.Metrics[0].External.Metric.Name)
	condition("Active", "False")

	rdb := redis.NewClient(&redis.Options{Addr: s.e.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.RPush(ctx, list, "j1", "j2", "j3").Err(); err != nil {
		t.Fatal(err)
	}
	condition("Active", "True")
	replicas(1)
	if err := rdb.Del(ctx, list).Err(); err != nil {
		t.Fatal(err)
	}
	condition("Active", "False")
	replicas(0)

	for _, rpc := range []string{"GetMetricSpec", "IsActive"} {
		n := s.scraped(t, fmt.Sprintf(`swell_external_scaler_requests_total{code="OK",rpc=%q}`, rpc))
		if n == 0 {
			t.Errorf("the chart's scaler never answered KEDA's %s", rpc)
		}
		t.Logf("the chart's scaler answered %s %v times (its /metrics)", rpc, n)
	}
	tunnels := s.proxy.tunnels(esNamespace, esService)
	if tunnels == 0 {
		t.Error("KEDA never connected through the Service's name")
	}
	t.Logf("connections to Service %s/%s: %d", esNamespace, esService, tunnels)
}

// dial connects to the scaler by the Service's name through the proxy.
func (s *chartScaler) dial(t *testing.T, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	return s.dialCreds(t, credentials.NewTLS(cfg))
}

func (s *chartScaler) dialCreds(t *testing.T, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+s.addr, grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return s.proxy.dialVia(ctx, addr) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// scraped reads one series from the scaler pod's /metrics (host network).
func (s *chartScaler) scraped(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

func renderedDeployment(t *testing.T, objs []*unstructured.Unstructured, name string) *appsv1.Deployment {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == "Deployment" && o.GetName() == name {
			d := &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, d); err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	t.Fatalf("chart rendered no Deployment %s", name)
	return nil
}

// materializeProjectedSecrets writes each projected Secret item of the
// Deployment's pod at its mount path, reading the Secrets from the
// apiserver: what kubelet's projected volume does, for a node that has no
// volume plugins.
func materializeProjectedSecrets(ctx context.Context, t *testing.T, e *testenv.Env, dep *appsv1.Deployment) {
	t.Helper()
	pod := dep.Spec.Template.Spec
	mounts := map[string]string{}
	for _, m := range pod.Containers[0].VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	n := 0
	for _, v := range pod.Volumes {
		if v.Projected == nil {
			t.Fatalf("volume %s is not projected; this test only provides projected Secrets", v.Name)
		}
		dir := mounts[v.Name]
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, src := range v.Projected.Sources {
			sec, err := e.Clientset.CoreV1().Secrets(dep.Namespace).Get(ctx, src.Secret.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("volume %s: %v", v.Name, err)
			}
			for _, it := range src.Secret.Items {
				b, ok := sec.Data[it.Key]
				if !ok {
					t.Fatalf("volume %s: Secret %s has no key %s", v.Name, sec.Name, it.Key)
				}
				if err := os.WriteFile(filepath.Join(dir, it.Path), b, 0o600); err != nil {
					t.Fatal(err)
				}
				n++
			}
		}
	}
	t.Logf("projected %d Secret items for %s", n, dep.Name)
}

// waitForReadyScaler waits for the scaler's pod to be Running and Ready on
// the process node; its log is printed if the test fails.
func waitForReadyScaler(ctx context.Context, t *testing.T, e *testenv.Env, node *procnode.Node) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	t.Cleanup(func() {
		if t.Failed() && pod != nil {
			b, _ := os.ReadFile(node.LogPath(esNamespace, pod.Name, "external-scaler"))
			t.Logf("external scaler log:\n%s", b)
		}
	})
	waitWithin(ctx, t, 2*time.Minute, "the external scaler pod Running and Ready", func(ctx context.Context) (bool, error) {
		pods, err := e.Clientset.CoreV1().Pods(esNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=external-scaler"})
		if err != nil {
			return false, err
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Spec.NodeName != node.Name() {
				continue
			}
			pod = p
			if failed := startFailure(p); failed != "" {
				t.Fatalf("scaler pod %s did not start: %s", p.Name, failed)
			}
			if p.Status.Phase == corev1.PodRunning && podReady(p) {
				return true, nil
			}
		}
		return false, nil
	})
	return pod
}

// assertNoKubeCredentials: the apiserver's ServiceAccount admission gave
// the scaler's pod no token volume (the chart turns automount off), so the
// process node handed its process no kubeconfig: it cannot call the
// apiserver at all.
func assertNoKubeCredentials(t *testing.T, pod *corev1.Pod, e *testenv.Env) {
	t.Helper()
	for _, c := range pod.Spec.Containers {
		for _, m := range c.VolumeMounts {
			if m.MountPath == procnode.ServiceAccountMountPath {
				t.Errorf("the scaler pod mounts a ServiceAccount token (volume %s)", m.Name)
			}
		}
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(pod.Status.ContainerStatuses[0].ContainerID, "process://"))
	if err != nil {
		t.Fatal(err)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range strings.Split(string(environ), "\x00") {
		if strings.HasPrefix(kv, "KUBECONFIG=") || strings.Contains(kv, e.Kubeconfig) {
			t.Errorf("the external scaler has Kubernetes credentials: %s", kv)
		}
	}
}

// waitServiceEndpoint waits until the endpointslice controller has a ready
// endpoint for the Service's port name at the pod's port. While it waits,
// the controller's latest warning about the Service (for example the
// apiserver refusing the slice's address) is the error it reports.
func waitServiceEndpoint(ctx context.Context, t *testing.T, e *testenv.Env, ns, svc, port string, want int) {
	t.Helper()
	waitWithin(ctx, t, time.Minute, fmt.Sprintf("a ready endpoint of Service %s port %s", svc, port), func(ctx context.Context) (bool, error) {
		addr, err := resolveService(ctx, e, ns, svc, 0, port)
		if err != nil {
			if w := lastWarning(ctx, e, ns, "Service", svc); w != "" {
				return false, fmt.Errorf("%w; the controller's last warning: %s", err, w)
			}
			return false, err
		}
		_, p, _ := net.SplitHostPort(addr)
		return p == strconv.Itoa(want), fmt.Errorf("endpoint %s", addr)
	})
}

// lastWarning is the newest Warning event's reason and message about an
// object, or "".
func lastWarning(ctx context.Context, e *testenv.Env, ns, kind, name string) string {
	evs, err := e.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name + ",type=" + corev1.EventTypeWarning,
	})
	if err != nil || len(evs.Items) == 0 {
		return ""
	}
	last := evs.Items[0]
	for _, ev := range evs.Items[1:] {
		if ev.LastTimestamp.After(last.LastTimestamp.Time) {
			last = ev
		}
	}
	return last.Reason + ": " + last.Message
}

// waitWithin is waitFor with a deadline of its own: a wait that cannot end
// fails after d, naming what it waited for and what it last saw, long
// before go test's timeout would dump goroutines instead.
func waitWithin(ctx context.Context, t *testing.T, d time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	waitFor(wctx, t, fmt.Sprintf("%s (waited %s)", what, d), func() (bool, error) { return cond(wctx) })
}

// resolveService is cluster DNS plus kube-proxy for one connection: the
// Service's port (by number, or by name when port is 0) and a ready
// endpoint for it from the Service's EndpointSlices.
func resolveService(ctx context.Context, e *testenv.Env, ns, name string, port int, portName string) (string, error) {
	svc, err := e.Clientset.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	found := false
	for _, p := range svc.Spec.Ports {
		if (port != 0 && int(p.Port) == port) || (port == 0 && p.Name == portName) {
			portName, found = p.Name, true
		}
	}
	if !found {
		return "", fmt.Errorf("Service %s/%s has no port %d%s", ns, name, port, portName)
	}
	slices, err := e.Clientset.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return "", err
	}
	for _, sl := range slices.Items {
		for _, p := range sl.Ports {
			if ptr.Deref(p.Name, "") != portName || p.Port == nil {
				continue
			}
			for _, ep := range sl.Endpoints {
				if ptr.Deref(ep.Conditions.Ready, false) && len(ep.Addresses) > 0 {
					return net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(*p.Port))), nil
				}
			}
		}
	}
	return "", fmt.Errorf("no ready endpoint for %s/%s port %s in %d EndpointSlices", ns, name, portName, len(slices.Items))
}

// serviceProxy is an HTTP CONNECT proxy that routes <service>.<namespace>
// names to the Services' endpoints.
type serviceProxy struct {
	e    *testenv.Env
	addr string
	mu   sync.Mutex
	seen map[string]*atomic.Int64
}

func startServiceProxy(t *testing.T, e *testenv.Env) *serviceProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &serviceProxy{e: e, addr: lis.Addr().String(), seen: map[string]*atomic.Int64{}}
	srv := &http.Server{Handler: http.HandlerFunc(p.serveConnect), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

// serviceName splits <service>.<namespace>[.svc[.cluster.local]].
func serviceName(host string) (ns, name string, ok bool) {
	host = strings.TrimSuffix(strings.TrimSuffix(host, ".cluster.local"), ".svc")
	name, ns, ok = strings.Cut(host, ".")
	return ns, name, ok && ns != "" && !strings.Contains(ns, ".")
}

func (p *serviceProxy) serveConnect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	host, portStr, err := net.SplitHostPort(r.Host)
	ns, name, ok := serviceName(host)
	port, perr := strconv.Atoi(portStr)
	if err != nil || perr != nil || !ok {
		http.Error(w, "want <service>.<namespace>[.svc]:<port>", http.StatusBadRequest)
		return
	}
	target, err := resolveService(r.Context(), p.e, ns, name, port, "")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	up, err := net.Dial("tcp", target)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		_ = up.Close()
		http.Error(w, "no hijacking", http.StatusInternalServerError)
		return
	}
	down, buf, err := hj.Hijack()
	if err != nil {
		_ = up.Close()
		return
	}
	p.count(ns, name).Add(1)
	_, _ = down.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	go func() {
		_, _ = io.Copy(up, buf)
		_ = up.Close()
	}()
	go func() {
		_, _ = io.Copy(down, up)
		_ = down.Close()
	}()
}

func (p *serviceProxy) count(ns, name string) *atomic.Int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := ns + "/" + name
	if p.seen[k] == nil {
		p.seen[k] = &atomic.Int64{}
	}
	return p.seen[k]
}

// tunnels is how many connections the proxy opened to the Service.
func (p *serviceProxy) tunnels(ns, name string) int64 { return p.count(ns, name).Load() }

// dialVia opens a tunnel to addr (a Service name and port) through the
// proxy, as grpc-go does for HTTPS_PROXY.
func (p *serviceProxy) dialVia(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", addr, addr); err != nil {
		_ = c.Close()
		return nil, err
	}
	// The status line and headers only: after a 200 the stream is the
	// tunnel, so no body is read.
	br := bufio.NewReader(c)
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err == nil {
		_, err = tp.ReadMIMEHeader()
	}
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("proxy CONNECT %s: %w", addr, err)
	}
	if _, code, _ := strings.Cut(line, " "); !strings.HasPrefix(code, "200") {
		_ = c.Close()
		return nil, fmt.Errorf("proxy CONNECT %s: %s", addr, line)
	}
	if br.Buffered() > 0 {
		_ = c.Close()
		return nil, fmt.Errorf("proxy sent data before the tunnel")
	}
	return c, nil
}

// waitHPA waits for the HPA KEDA creates.
func waitHPA(ctx context.Context, t *testing.T, e *testenv.Env, ns, name string) *autoscalingv2.HorizontalPodAutoscaler {
	t.Helper()
	var hpa *autoscalingv2.HorizontalPodAutoscaler
	waitWithin(ctx, t, 2*time.Minute, "KEDA's HPA "+name, func(ctx context.Context) (bool, error) {
		h, err := e.Clientset.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		hpa = h
		return len(h.Spec.Metrics) == 1 && h.Spec.Metrics[0].External != nil, fmt.Errorf("metrics %+v", h.Spec.Metrics)
	})
	return hpa
}

// scalerPKI is a CA, the scaler's serving certificate for the Service's
// name, and client certificates.
type scalerPKI struct {
	ca, serverCert, serverKey []byte
	caCert                    *x509.Certificate
	caKey                     *ecdsa.PrivateKey
}

func newScalerPKI(t *testing.T, host string) scalerPKI {
	t.Helper()
	caCert, caKey, caPEM := newTestCA(t, "swell-external-scaler-e2e-ca")
	short := strings.TrimSuffix(host, ".svc")
	cert, key := signLeaf(t, caCert, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: host},
		DNSNames:    []string{short, host, host + ".cluster.local"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return scalerPKI{ca: caPEM, serverCert: cert, serverKey: key, caCert: caCert, caKey: caKey}
}

func (p scalerPKI) clientPEM(t *testing.T) (cert, key []byte) {
	t.Helper()
	return signLeaf(t, p.caCert, p.caKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "keda"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// clientTLS trusts the CA and presents a client certificate it signed.
func (p scalerPKI) clientTLS(t *testing.T) *tls.Config {
	t.Helper()
	cfg := p.clientTLSWithout(t)
	cert, key := p.clientPEM(t)
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Certificates = []tls.Certificate{pair}
	return cfg
}

// clientTLSWithout trusts the CA and presents no certificate.
func (p scalerPKI) clientTLSWithout(t *testing.T) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.ca) {
		t.Fatal("bad CA PEM")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// foreignClientTLS presents a client certificate another CA signed.
func (p scalerPKI) foreignClientTLS(t *testing.T) *tls.Config {
	t.Helper()
	cfg := p.clientTLSWithout(t)
	otherCA, otherKey, _ := newTestCA(t, "another-ca")
	cert, key := signLeaf(t, otherCA, otherKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "intruder"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Certificates = []tls.Certificate{pair}
	return cfg
}

func newTestCA(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func signLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
