package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/cpa"
	"github.com/swell-autoscaler/swell/pkg/externalscaler"
	pb "github.com/swell-autoscaler/swell/pkg/externalscaler/proto"
	"github.com/swell-autoscaler/swell/pkg/externalscaler/scalertest"
)

// The egress security suite plays a tenant whose Role allows PodAutoscalers
// plus get on Deployments and events in its own namespace, against the real
// control plane and the controller with the shipped RBAC. 127.0.0.2 stands
// in for an internal address (a cloud metadata service): the suite's
// controller allows only 127.0.0.1 (its test servers), as an operator
// allows an in-cluster range.

const metadataBody = "AKIAINTERNALCREDENTIAL-role-secret-0123456789"

// tenantClient creates a ServiceAccount in ns bound to a Role with only
// namespaced rights (PodAutoscalers, get on Deployments, events) and
// returns a client impersonating it.
func tenantClient(ctx context.Context, t *testing.T, ns string) client.Client {
	t.Helper()
	return tenantWith(ctx, t, ns, "tenant", []rbacv1.PolicyRule{
		{APIGroups: []string{"swell.dev"}, Resources: []string{"podautoscalers"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"get", "list"}},
	})
}

// tenantWith binds ns's default ServiceAccount to a Role of the given rules
// and returns a client impersonating it.
func tenantWith(ctx context.Context, t *testing.T, ns, role string, rules []rbacv1.PolicyRule) client.Client {
	t.Helper()
	r := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: role, Namespace: ns}, Rules: rules}
	if _, err := env.Clientset.RbacV1().Roles(ns).Create(ctx, r, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Role: %v", err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: ns}},
	}
	if _, err := env.Clientset.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create RoleBinding: %v", err)
	}
	cfg := rest.CopyConfig(env.RESTConfig)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":default",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	c, err := client.New(cfg, client.Options{Scheme: startController(t).Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// countingServer serves body on addr and counts requests.
func countingServer(t *testing.T, addr, body string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		fmt.Fprint(w, body)
	}))
	_ = srv.Listener.Close()
	srv.Listener = lis
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestSecurityPodAutoscalerSSRFRefused: the tenant points a PodAutoscaler's
// metric at the internal address and its evaluator at their own server,
// and another at the API server. The controller refuses both
// connections: the internal listener receives no request, the tenant's
// server receives nothing, the Deployment keeps its count, and the
// condition and events say what was refused (naming --egress-allow) with
// nothing of the internal body.
func TestSecurityPodAutoscalerSSRFRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	startController(t)
	ns := newNamespace(ctx, t)
	tenant := tenantClient(ctx, t, ns)
	internal, internalHits := countingServer(t, "127.0.0.2:0", metadataBody)
	attacker, attackerHits := countingServer(t, "127.0.0.1:0", `{"targetReplicas": 5}`)
	createCPADeployment(ctx, t, ns, "web", 2, "")

	evaluate := swellv1.EvaluateMethod{HTTP: &swellv1.HTTPMethod{Method: http.MethodPost, URL: attacker.URL + "/collect", ParameterMode: "body"}}
	ssrf := newPodAutoscaler(ns, "web", cpa.PerResource, evaluate, internal.URL+"/latest/meta-data/iam/security-credentials/node")
	if err := tenant.Create(ctx, ssrf); err != nil {
		t.Fatalf("tenant creates the PodAutoscaler: %v", err)
	}
	apiserver := newPodAutoscaler(ns, "web", cpa.PerResource, swellv1.EvaluateMethod{Expression: "value"}, env.RESTConfig.Host+"/api")
	apiserver.Name = "apiserver"
	if err := tenant.Create(ctx, apiserver); err != nil {
		t.Fatalf("tenant creates the second PodAutoscaler: %v", err)
	}

	for name, want := range map[string]string{"web": "127.0.0.0/8, loopback", "apiserver": "Kubernetes API server"} {
		got := waitPodAutoscaler(ctx, t, tenant, ns, name, "Ready=False FailedGetMetrics naming the refusal", func(pa *swellv1.PodAutoscaler) bool {
			c := meta.FindStatusCondition(pa.Status.Conditions, "Ready")
			return c != nil && c.Status == metav1.ConditionFalse && c.Reason == cpa.ReasonFailedGetMetrics
		})
		c := meta.FindStatusCondition(got.Status.Conditions, "Ready")
		if !strings.Contains(c.Message, "refused") || !strings.Contains(c.Message, want) || !strings.Contains(c.Message, "--egress-allow") {
			t.Fatalf("%s: Ready message %q, want a refusal naming %q and --egress-allow", name, c.Message, want)
		}
		waitPodAutoscalerEvent(ctx, t, ns, name, cpa.ReasonFailedGetMetrics)
	}
	// Several passes have run (intervalSeconds 1): count them by events.
	waitFor(ctx, t, "three failed passes of the SSRF PodAutoscaler", func() (bool, error) {
		l, err := env.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=web"})
		if err != nil {
			return false, err
		}
		var n int32
		for _, e := range l.Items {
			if e.Reason == cpa.ReasonFailedGetMetrics {
				n += max(e.Count, 1)
			}
		}
		return n >= 3, nil
	})
	if n := internalHits.Load(); n != 0 {
		t.Fatalf("the internal listener received %d requests", n)
	}
	if n := attackerHits.Load(); n != 0 {
		t.Fatalf("the tenant's server received %d requests", n)
	}
	if n := replicasOf(ctx, t, ns, "web"); n != 2 {
		t.Fatalf("replicas = %d, want 2 held", n)
	}
	// Nothing of the internal body is readable by the tenant.
	var pas swellv1.PodAutoscalerList
	if err := tenant.List(ctx, &pas, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	events, err := env.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seen := fmt.Sprintf("%+v %+v", pas.Items, events.Items)
	if strings.Contains(seen, "AKIA") || strings.Contains(seen, "role-secret") {
		t.Fatalf("the internal body reached status or events")
	}
}

// TestSecurityExternalScalerCredentialRedirectRefused: the external scaler
// holds a Redis password declared for the real broker only. A caller (a
// ScaledObject author, or anyone reaching the port) pairs that credential
// with their own address: the call is refused with PermissionDenied and
// the attacker's listener receives no connection, while the declared
// broker works with the same credential.
func TestSecurityExternalScalerCredentialRedirectRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	attacker, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = attacker.Close() }()
	var conns atomic.Int32
	go func() {
		for {
			c, err := attacker.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			_ = c.Close()
		}
	}()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "redis-password"), []byte("not-the-real-one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	parser := &externalscaler.Parser{Files: externalscaler.SecretFiles{
		Dir: dir, Bindings: externalscaler.Bindings{"redis-password": {env.RedisAddr}},
	}}
	h := scalertest.Start(t, scalertest.Options{Parser: parser, Logger: slog.New(slog.DiscardHandler)})
	evil := &pb.ScaledObjectRef{Name: "evil", Namespace: "tenant", ScalerMetadata: map[string]string{
		"source": "redis", "address": attacker.Addr().String(), "listName": "q", "passwordFile": "redis-password",
	}}
	_, err = h.Client.GetMetricSpec(ctx, evil)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "may not be sent to "+attacker.Addr().String()) {
		t.Fatalf("GetMetricSpec = %v, want PermissionDenied naming the attacker's address", err)
	}
	if _, err := h.Client.IsActive(ctx, evil); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("IsActive = %v, want PermissionDenied", err)
	}
	// The declared address parses with the same credential.
	good := map[string]string{"source": "redis", "address": env.RedisAddr, "listName": "q", "passwordFile": "redis-password"}
	if _, err := parser.Parse(good); err != nil {
		t.Fatalf("declared broker refused: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	if n := conns.Load(); n != 0 {
		t.Fatalf("the attacker's listener received %d connections", n)
	}
}
