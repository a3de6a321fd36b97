package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
)

// recordingListener accepts TCP connections on addr and keeps every byte
// they send: it stands in for an attacker's "broker", and it answers
// nothing, so a client sends its hello and credentials and then waits.
type recordingListener struct {
	addr  string
	mu    sync.Mutex
	conns int
	got   bytes.Buffer
}

func listenRecording(t *testing.T, addr string) *recordingListener {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	r := &recordingListener{addr: lis.Addr().String()}
	t.Cleanup(func() { _ = lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns++
			r.mu.Unlock()
			go func() {
				defer func() { _ = c.Close() }()
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					r.mu.Lock()
					r.got.Write(buf[:n])
					r.mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return r
}

func (r *recordingListener) snapshot() (int, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns, r.got.String()
}

// brokerTenantClient is a tenant whose Role allows ScalerConfigs and
// QWorkers and reading events in ns, and nothing on Secrets.
func brokerTenantClient(ctx context.Context, t *testing.T, ns string) client.Client {
	t.Helper()
	return tenantWith(ctx, t, ns, "broker-tenant", []rbacv1.PolicyRule{
		{APIGroups: []string{"quickube.com"}, Resources: []string{"scalerconfigs", "qworkers"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"get", "list"}},
	})
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestSecurityTenantCannotReadAnotherNamespacesSecret plays a tenant who may
// write ScalerConfigs in their namespace and read nothing else, and who
// wants the broker password a Secret of another namespace holds. Their
// ScalerConfig names that Secret and points at their own listener:
//   - by its plain name, Swell looks in the tenant's namespace only (the
//     status says "Secret <tenant-ns>/<name>" is not found) and the
//     listener receives no connection;
//   - a name that tries to leave the namespace ("../<ns>/secrets/<name>",
//     "<ns>/<name>") in each of the three Secret fields is refused by the
//     API server, naming the field;
//   - as a control, an inline password does reach the listener, so the
//     listener would have seen a credential had one been sent;
//   - a ScalerConfig on a loopback address the operator did not allow
//     (127.0.0.2) is refused before connecting, naming --egress-allow.
//
// The victim's password appears in no byte the listener received, and in
// no status or event of the tenant's namespace.
func TestSecurityTenantCannotReadAnotherNamespacesSecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kube := startController(t)
	ns := newNamespace(ctx, t)
	victimNS := ns + "-victim"
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: victimNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Clientset.CoreV1().Namespaces().Delete(context.Background(), victimNS, metav1.DeleteOptions{})
	})
	victimPassword := "victim-password-" + randomHex(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "broker-password", Namespace: victimNS}, Data: map[string][]byte{"password": []byte(victimPassword)}}
	if _, err := env.Clientset.CoreV1().Secrets(victimNS).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tenant := brokerTenantClient(ctx, t, ns)
	if err := tenant.Get(ctx, client.ObjectKey{Namespace: victimNS, Name: "broker-password"}, &corev1.Secret{}); err == nil {
		t.Fatal("the tenant can read the victim's Secret itself; the test proves nothing")
	}
	attacker := listenRecording(t, "127.0.0.1:0")
	host, port, _ := strings.Cut(attacker.addr, ":")
	scalerConfig := func(name string, pw *qv1.Password, tls *qv1.TLS) *qv1.ScalerConfig {
		return &qv1.ScalerConfig{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       qv1.ScalerConfigSpec{Type: qv1.BrokerRedis, Config: qv1.ScalerConnection{Host: host, Port: port, Password: pw, TLS: tls}},
		}
	}

	// By plain name: looked up in the tenant's own namespace only.
	byName := scalerConfig("steal", &qv1.Password{Secret: &qv1.SecretKey{Name: "broker-password", Key: "password"}}, nil)
	if err := tenant.Create(ctx, byName); err != nil {
		t.Fatalf("tenant creates ScalerConfig: %v", err)
	}
	waitScalerConfigHealthy(ctx, t, kube, ns, "steal", false)
	got := &qv1.ScalerConfig{}
	if err := kube.Get(ctx, client.ObjectKeyFromObject(byName), got); err != nil {
		t.Fatal(err)
	}
	if want := "Secret " + ns + "/broker-password"; !strings.Contains(got.Status.Message, want) || !strings.Contains(got.Status.Message, "not found") {
		t.Errorf("status %q: want it to say %q is not found", got.Status.Message, want)
	}
	waitScalerConfigEvent(ctx, t, ns, "steal", "BrokerUnreachable")
	if conns, _ := attacker.snapshot(); conns != 0 {
		t.Errorf("the tenant's listener got %d connections from a ScalerConfig whose Secret does not exist", conns)
	}

	// Names that try to leave the namespace, in every Secret field.
	for _, name := range []string{"../" + victimNS + "/secrets/broker-password", victimNS + "/broker-password"} {
		key := &qv1.SecretKey{Name: name, Key: "password"}
		cases := map[string]*qv1.ScalerConfig{
			"spec.config.password.secret.name":                 scalerConfig("escape-a", &qv1.Password{Secret: key}, nil),
			"spec.config.password.valueFrom.secretKeyRef.name": scalerConfig("escape-b", &qv1.Password{ValueFrom: &qv1.ValueFrom{SecretKeyRef: *key}}, nil),
			"spec.config.tls.caSecret":                         scalerConfig("escape-c", nil, &qv1.TLS{Enabled: true, CASecret: name}),
		}
		for field, sc := range cases {
			err := tenant.Create(ctx, sc)
			if err == nil {
				t.Errorf("ScalerConfig with %s=%q was accepted", field, name)
				continue
			}
			if !strings.Contains(err.Error(), field) {
				t.Errorf("ScalerConfig with %s=%q refused with %q: want the field named", field, name, err)
			}
		}
	}

	// Control: an inline credential does reach the listener.
	inline := "tenant-inline-" + randomHex(t)
	if err := tenant.Create(ctx, scalerConfig("control", &qv1.Password{Value: inline}, nil)); err != nil {
		t.Fatalf("tenant creates the control ScalerConfig: %v", err)
	}
	waitFor(ctx, t, "the control ScalerConfig's credential at the listener", func() (bool, error) {
		_, b := attacker.snapshot()
		return strings.Contains(b, inline), nil
	})

	// A loopback address the operator did not allow: refused before dialling.
	other := listenRecording(t, "127.0.0.2:0")
	h2, p2, _ := strings.Cut(other.addr, ":")
	refused := &qv1.ScalerConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "loopback", Namespace: ns},
		Spec:       qv1.ScalerConfigSpec{Type: qv1.BrokerRedis, Config: qv1.ScalerConnection{Host: h2, Port: p2, Password: &qv1.Password{Value: inline}}},
	}
	if err := tenant.Create(ctx, refused); err != nil {
		t.Fatal(err)
	}
	waitScalerConfigHealthy(ctx, t, kube, ns, "loopback", false)
	if err := kube.Get(ctx, client.ObjectKeyFromObject(refused), got); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got.Status.Message, "--egress-allow") {
		t.Errorf("loopback ScalerConfig status %q: want the refusal to name --egress-allow", got.Status.Message)
	}
	if conns, _ := other.snapshot(); conns != 0 {
		t.Errorf("the refused address got %d connections", conns)
	}

	// Nothing of the victim's password anywhere the tenant can look.
	if _, b := attacker.snapshot(); strings.Contains(b, victimPassword) {
		t.Error("the victim's password reached the tenant's listener")
	}
	var scs qv1.ScalerConfigList
	if err := tenant.List(ctx, &scs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	events, err := env.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range scs.Items {
		if strings.Contains(sc.Status.Message, victimPassword) {
			t.Errorf("ScalerConfig %s status carries the victim's password", sc.Name)
		}
	}
	for _, e := range events.Items {
		if strings.Contains(e.Message, victimPassword) {
			t.Errorf("event %s carries the victim's password", e.Name)
		}
	}
	t.Logf("tenant %s: plain name looked up in its own namespace; 6 escaping names refused by the API server; control credential seen by the listener; 127.0.0.2 refused before dialling; victim password seen nowhere", ns)
}
