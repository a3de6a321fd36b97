package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/controller/qworker"
)

// TestPausedLeaderMakesNoWriteAfterResume runs two `swell controller
// --leader-elect` processes, each as its own ServiceAccount, against the
// shared apiserver. The leader is frozen with SIGSTOP for 20 s while the
// backlog changes twice; the standby takes over and acts. After SIGCONT the
// stale leader's cache and queue are 20 s old; an admission webhook records
// every pod and QWorker write with the identity that made it, and none may
// come from the stale leader after it resumed.
func TestPausedLeaderMakesNoWriteAfterResume(t *testing.T) {
	startController(t) // CRDs and the shared controller, which the webhook keeps out of this namespace
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	bin := buildSwell(t)
	audit := startWriteAudit(ctx, t, ns)
	users := grantControllerRBAC(ctx, t, ns, "leader-a", "leader-b")

	c := kube
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	queue := ns + "-tasks"
	if err := c.Create(ctx, redisScalerConfig(ns, "redis", env.RedisAddr)); err != nil {
		t.Fatalf("create ScalerConfig: %v", err)
	}

	// Leader A first, so it is the one holding the lease.
	a := startLeaderElected(ctx, t, bin, ns, users[0])
	waitFor(ctx, t, "a leader lease", func() (bool, error) {
		l, err := env.Clientset.CoordinationV1().Leases(ns).Get(ctx, "swell-controller.swell.dev", metav1.GetOptions{})
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "", nil
	})
	b := startLeaderElected(ctx, t, bin, ns, users[1])

	for i := range 10 {
		rdb.LPush(ctx, queue, fmt.Sprintf("t%d", i))
	}
	qw := kwokQWorker(ns, "workers", queue, 0, 10, 0.5) // 10 tasks → 5 pods
	if err := c.Create(ctx, qw); err != nil {
		t.Fatalf("create QWorker: %v", err)
	}
	waitForRunningPods(ctx, t, ns, "workers", 5)
	if n := audit.count(users[0], "CREATE", "pods"); n != 5 {
		t.Fatalf("leader A created %d pods, want 5 (audit: %s)", n, audit.summary())
	}
	if n := audit.countUser(users[1]); n != 0 {
		t.Fatalf("standby B wrote %d times before any pause (audit: %s)", n, audit.summary())
	}

	// Freeze A for 20 s. Meanwhile the backlog goes 10 → 16 (8 pods) and
	// then 16 → 4 (2 pods); B takes the lease and follows both.
	if err := syscall.Kill(a.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	for i := range 6 {
		rdb.LPush(ctx, queue, fmt.Sprintf("u%d", i))
	}
	waitForRunningPods(ctx, t, ns, "workers", 8)
	rdb.LTrim(ctx, queue, 0, 3)
	waitForRunningPods(ctx, t, ns, "workers", 2)
	if rest := 20*time.Second - time.Since(stoppedAt); rest > 0 {
		time.Sleep(rest)
	}
	if audit.count(users[1], "CREATE", "pods") < 3 || audit.count(users[1], "DELETE", "pods") < 6 {
		t.Fatalf("B did not take over while A was stopped (audit: %s)", audit.summary())
	}
	resumedAt := time.Now()
	if err := syscall.Kill(a.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("leader A stopped for %s; writes seen by the webhook so far (swell-controller: the shared controller, refused here): %s", resumedAt.Sub(stoppedAt).Round(time.Millisecond), audit.summary())

	// A learns it lost the lease, ends its term and campaigns again in the
	// same process as a standby; every write it tried went through the guard.
	waitFor(ctx, t, "stale leader A to end its term and campaign again", func() (bool, error) {
		if exited(a) {
			return false, fmt.Errorf("A exited: %w", a.exitErr)
		}
		return strings.Contains(a.log(), "campaigning again"), nil
	})
	after := audit.since(users[0], resumedAt)
	if len(after) != 0 {
		t.Fatalf("stale leader A wrote %d times after resuming: %v\nlog:\n%s", len(after), after, a.logTail())
	}
	refused := strings.Count(a.log(), "refused while the leader lease is stale")
	t.Logf("stale leader A: lost its lease after SIGCONT and campaigns again without exiting, 0 writes reached the apiserver, %d writes refused by its lease guard", refused)
	if refused == 0 {
		t.Errorf("A's guard refused nothing: the pause gave the stale leader nothing to do, so the test proved nothing\n%s", a.logTail())
	}
	if !strings.Contains(a.log(), "leader election lost") {
		t.Errorf("A's log does not say it lost the election:\n%s", a.logTail())
	}

	// B keeps the count right after A's resume.
	waitForRunningPods(ctx, t, ns, "workers", 2)
	if got := getQWorker(ctx, t, c, ns, "workers"); got.Status.DesiredReplicas != 2 {
		t.Fatalf("desired %d, want 2", got.Status.DesiredReplicas)
	}
	if exited(b) {
		t.Fatalf("leader B exited: %v\n%s", b.exitErr, b.logTail())
	}
	if n := len(audit.since(users[0], resumedAt)); n != 0 {
		t.Fatalf("A, a standby again, wrote %d times (audit: %s)", n, audit.summary())
	}
}

// swellProcess is a `swell` child process with its log in a file.
type swellProcess struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	exitErr error
}

func (p *swellProcess) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func (p *swellProcess) logTail() string {
	s := p.log()
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}

// startSwell runs bin with args, logging to a file in the environment's
// directory, and stops it (SIGCONT first, in case it is frozen) at cleanup.
func startSwell(t *testing.T, bin, name string, args ...string) *swellProcess {
	t.Helper()
	return startSwellWith(t, bin, name, nil, args...)
}

// startSwellWith is startSwell with the process's environment (nil: this
// process's).
func startSwellWith(t *testing.T, bin, name string, environ []string, args ...string) *swellProcess {
	t.Helper()
	logPath := filepath.Join(env.Dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = environ
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &swellProcess{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.exitErr = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(45 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// startLeaderElected runs `swell controller --leader-elect` in ns as user,
// with short election timings (lease 4 s, renew deadline 3 s).
func startLeaderElected(ctx context.Context, t *testing.T, bin, ns, user string) *swellProcess {
	t.Helper()
	kubeconfig := impersonatingKubeconfig(t, user)
	name := strings.ReplaceAll(user[strings.LastIndex(user, ":")+1:], "/", "-")
	return startSwell(t, bin, "leader-pause-"+name, leaderElectedArgs(kubeconfig, ns,
		"--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms")...)
}

// impersonatingKubeconfig writes a copy of the environment's kubeconfig
// that acts as user (a ServiceAccount name) through impersonation.
func impersonatingKubeconfig(t *testing.T, user string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ns := strings.Split(user, ":")[2]
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = user
		ai.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// grantControllerRBAC binds config/rbac's ClusterRole and leader-election
// Role (in ns) to ServiceAccounts of ns named names, and returns their
// user names. The controllers run with exactly the shipped permissions.
func grantControllerRBAC(ctx context.Context, t *testing.T, ns string, names ...string) []string {
	t.Helper()
	var subjects []rbacv1.Subject
	var users []string
	for _, n := range names {
		subjects = append(subjects, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: n, Namespace: ns})
		users = append(users, "system:serviceaccount:"+ns+":"+n)
	}
	bindClusterRoleFile(ctx, t, "../../config/rbac/role.yaml", ns+"-controller", subjects)
	role := &rbacv1.Role{}
	readYAML(t, "../../config/rbac/leader_election_role.yaml", role)
	role.ObjectMeta = metav1.ObjectMeta{Name: "swell-leader-election", Namespace: ns}
	if _, err := env.Clientset.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   subjects,
	}
	if _, err := env.Clientset.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return users
}

// bindClusterRoleFile creates the ClusterRole of a config/rbac file under
// name and binds it to subjects, both deleted at cleanup.
func bindClusterRoleFile(ctx context.Context, t *testing.T, path, name string, subjects []rbacv1.Subject) {
	t.Helper()
	cr := &rbacv1.ClusterRole{}
	readYAML(t, path, cr)
	cr.ObjectMeta = metav1.ObjectMeta{Name: name}
	if _, err := env.Clientset.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   subjects,
	}
	if _, err := env.Clientset.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Clientset.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = env.Clientset.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// write is one write the apiserver admitted (or was asked to).
type write struct {
	At        time.Time
	User      string
	Operation string
	Resource  string
	Name      string
	// QWorker is the qworker label of a written pod (a created pod has no
	// name yet: generateName).
	QWorker string
}

func (w write) String() string {
	return fmt.Sprintf("%s %s %s/%s by %s", w.At.Format("15:04:05.000"), w.Operation, w.Resource, w.Name, w.User)
}

// writeAudit records, from a validating admission webhook, every write to
// pods and QWorkers (and their status) in one namespace, with who made it.
type writeAudit struct {
	mu     sync.Mutex
	writes []write
}

func (a *writeAudit) add(w write) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.writes = append(a.writes, w)
}

func (a *writeAudit) count(user, op, resource string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, w := range a.writes {
		if w.User == user && w.Operation == op && w.Resource == resource {
			n++
		}
	}
	return n
}

func (a *writeAudit) countUser(user string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, w := range a.writes {
		if w.User == user {
			n++
		}
	}
	return n
}

func (a *writeAudit) since(user string, t time.Time) []write {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []write
	for _, w := range a.writes {
		if w.User == user && !w.At.Before(t) {
			out = append(out, w)
		}
	}
	return out
}

// summary counts writes per user, operation and resource.
func (a *writeAudit) summary() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	counts := map[string]int{}
	var keys []string
	for _, w := range a.writes {
		k := fmt.Sprintf("%s %s %s", w.User[strings.LastIndex(w.User, ":")+1:], w.Operation, w.Resource)
		if counts[k] == 0 {
			keys = append(keys, k)
		}
		counts[k]++
	}
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, counts[k]))
	}
	return strings.Join(parts, ", ")
}

// podQWorker is the qworker label of the pod a request writes, if any.
func podQWorker(req *admissionv1.AdmissionRequest) string {
	raw := req.Object.Raw
	if len(raw) == 0 {
		raw = req.OldObject.Raw
	}
	var obj struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if req.Resource.Resource != "pods" || json.Unmarshal(raw, &obj) != nil {
		return ""
	}
	return obj.Metadata.Labels[qworker.LabelQWorker]
}

// writes returns a copy of every write recorded.
func (a *writeAudit) all() []write {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]write(nil), a.writes...)
}

// startWriteAudit serves a validating webhook on loopback over TLS and
// registers it for pod and QWorker writes in ns. It admits everything but
// the shared in-process controller (controllerServiceAccount), which
// watches every namespace and would otherwise act beside the two
// controllers under test.
func startWriteAudit(ctx context.Context, t *testing.T, ns string) *writeAudit {
	t.Helper()
	a := &writeAudit{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		review := admissionv1.AdmissionReview{}
		if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		req := review.Request
		resource := req.Resource.Resource
		if req.SubResource != "" {
			resource += "/" + req.SubResource
		}
		a.add(write{At: time.Now(), User: req.UserInfo.Username, Operation: string(req.Operation), Resource: resource, Name: req.Name, QWorker: podQWorker(req)})
		allowed := req.UserInfo.Username != controllerServiceAccount
		review.Response = &admissionv1.AdmissionResponse{UID: req.UID, Allowed: allowed}
		if !allowed {
			review.Response.Result = &metav1.Status{Message: "this namespace belongs to the leader-election test's controllers"}
		}
		review.Request = nil
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(review)
	}))
	t.Cleanup(srv.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if _, err := x509.ParseCertificate(srv.Certificate().Raw); err != nil {
		t.Fatal(err)
	}
	url := srv.URL + "/validate"
	ops := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete}
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-write-audit"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "write-audit.swell.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			TimeoutSeconds:          ptr.To[int32](5),
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			Rules: []admissionregistrationv1.RuleWithOperations{
				{Operations: ops, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}},
				{Operations: ops, Rule: admissionregistrationv1.Rule{APIGroups: []string{qv1.GroupVersion.Group}, APIVersions: []string{"*"}, Resources: []string{"qworkers", "qworkers/status"}}},
			},
		}},
	}
	if _, err := env.Clientset.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create webhook: %v", err)
	}
	// Registered after srv.Close, so it runs first: the namespace's
	// deletion must not meet a webhook that is gone.
	t.Cleanup(func() {
		_ = env.Clientset.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), cfg.Name, metav1.DeleteOptions{})
	})
	// The webhook is live once a write in ns shows up in the audit.
	probe := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"audit-probe"},"spec":{"containers":[{"name":"c","image":"registry.invalid/x:1"}]}}`
	waitFor(ctx, t, "the write-audit webhook", func() (bool, error) {
		res := env.Clientset.CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").
			Param("dryRun", "All").Body(bytes.NewBufferString(probe)).SetHeader("Content-Type", "application/json").Do(ctx)
		if err := res.Error(); err != nil {
			return false, err
		}
		return a.count("swell-admin", "CREATE", "pods") > 0, nil
	})
	return a
}
