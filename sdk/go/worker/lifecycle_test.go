package worker

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/swell-autoscaler/swell/internal/testenv"
)

// TestOnQWorkerLeavesOnlyWhenAsked: a changed pod-spec hash makes the
// worker leave only with LeaveWhenOutdated; by default it waits for the
// controller's retire mark.
func TestOnQWorkerLeavesOnlyWhenAsked(t *testing.T) {
	qw := func(hash string, desired, current int64) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{
			"currentPodSpecHash": hash, "desiredReplicas": desired, "currentReplicas": current,
		}}}
	}
	for name, tc := range map[string]struct {
		obj           *unstructured.Unstructured
		leaveOutdated bool
		legacyScale   bool
		want          Reason // "" = stays
	}{
		"new hash, default":         {obj: qw("h2", 3, 3)},
		"new hash, opt-in":          {obj: qw("h2", 3, 3), leaveOutdated: true, want: ReasonOutdated},
		"same hash, opt-in":         {obj: qw("h1", 3, 3), leaveOutdated: true},
		"no hash yet, opt-in":       {obj: qw("", 3, 3), leaveOutdated: true},
		"scale down, default":       {obj: qw("h1", 2, 3)},
		"scale down, QScaler rule":  {obj: qw("h1", 2, 3), legacyScale: true, want: ReasonScaleDown},
		"new hash and QScaler rule": {obj: qw("h2", 3, 3), legacyScale: true},
	} {
		t.Run(name, func(t *testing.T) {
			l := newLifecycle(Identity{PodSpecHash: "h1"}, nil, nil, tc.legacyScale)
			l.leaveOutdated = tc.leaveOutdated
			l.onQWorker(tc.obj)
			got := Reason("")
			select {
			case <-l.Stopped():
				got = l.Reason()
			default:
			}
			if got != tc.want {
				t.Fatalf("reason = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestStartFailsFastNamingTheMissingPermission runs the lifecycle as a
// ServiceAccount of a real (RBAC) API server: without the worker Role it
// fails within 30 s naming what is missing; with config/rbac/qworker-worker's
// Role it starts.
func TestStartFailsFastNamingTheMissingPermission(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := testenv.New(t, testenv.Options{APIServer: true})
	installQWorkerCRD(ctx, t, env)
	shipped := shippedWorkerRole(t)
	podsOnly := []rbacv1.PolicyRule{shipped.Rules[0]}
	for name, tc := range map[string]struct {
		rules   []rbacv1.PolicyRule // nil: no Role at all
		wantErr []string
	}{
		"no role":         {wantErr: []string{"list pods", "watch pods", "delete pods/w-0", "watch qworkers.quickube.com", "namespace"}},
		"pods only":       {rules: podsOnly, wantErr: []string{"list qworkers.quickube.com", "watch qworkers.quickube.com"}},
		"the worker Role": {rules: shipped.Rules},
	} {
		t.Run(name, func(t *testing.T) {
			ns := strings.ReplaceAll(strings.ToLower(name), " ", "-")
			cfg := workerConfig(ctx, t, env, ns, tc.rules)
			kube, dyn := kubernetes.NewForConfigOrDie(cfg), dynamic.NewForConfigOrDie(cfg)
			id := Identity{QWorker: "w", Pod: "w-0", Namespace: ns, PodSpecHash: "h", PullingInterval: time.Minute}
			l := newLifecycle(id, kube, dyn, false)
			runCtx, stop := context.WithCancel(ctx)
			defer stop()
			began := time.Now()
			err := l.start(runCtx, ctx)
			took := time.Since(began)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("start with the worker Role: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("start succeeded without the permissions")
			}
			if took > syncTimeout {
				t.Errorf("start failed after %v, want within %v", took, syncTimeout)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			t.Logf("failed after %v: %v", took.Round(time.Millisecond), err)
		})
	}
}

// shippedWorkerRole reads the worker Role of config/rbac/qworker-worker.
func shippedWorkerRole(t *testing.T) rbacv1.Role {
	t.Helper()
	var role rbacv1.Role
	b, err := os.ReadFile("../../../config/rbac/qworker-worker/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &role); err != nil {
		t.Fatal(err)
	}
	return role
}

// workerConfig makes namespace ns with a ServiceAccount bound to rules and
// returns a config acting as that ServiceAccount.
func workerConfig(ctx context.Context, t *testing.T, env *testenv.Env, ns string, rules []rbacv1.PolicyRule) *rest.Config {
	t.Helper()
	cs := env.Clientset
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if rules != nil {
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "worker"}, Rules: rules}
		if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "worker"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "worker"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "worker"}},
		}
		if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(env.RESTConfig)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":worker",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	return cfg
}

// installQWorkerCRD serves the QWorker resource with an open schema: the
// lifecycle only lists and watches it.
func installQWorkerCRD(ctx context.Context, t *testing.T, env *testenv.Env) {
	t.Helper()
	yes := true
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "qworkers.quickube.com"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "quickube.com", Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "qworkers", Singular: "qworker", Kind: "QWorker", ListKind: "QWorkerList"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1alpha1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &yes}},
			}},
		},
	}
	cs := apiextensionsclient.NewForConfigOrDie(env.RESTConfig)
	if _, err := cs.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		got, err := cs.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range got.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("QWorker CRD not established")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestMarkTakingTasks runs the readiness-gate write as a worker
// ServiceAccount of a real API server: with the worker Role it sets the
// condition once on a gated pod (a second call writes nothing), it leaves
// an ungated pod alone, and without pods/status patch it fails naming that
// permission.
func TestMarkTakingTasks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := testenv.New(t, testenv.Options{APIServer: true})
	shipped := shippedWorkerRole(t)
	var noStatus []rbacv1.PolicyRule
	for _, r := range shipped.Rules {
		if !slices.Contains(r.Resources, "pods/status") {
			noStatus = append(noStatus, r)
		}
	}
	if len(noStatus) == len(shipped.Rules) {
		t.Fatal("the worker Role grants nothing on pods/status")
	}
	for name, tc := range map[string]struct {
		rules     []rbacv1.PolicyRule
		gated     bool
		wantWrote bool
		wantErr   string
	}{
		"gated pod, worker Role":      {rules: shipped.Rules, gated: true, wantWrote: true},
		"ungated pod, worker Role":    {rules: shipped.Rules},
		"gated pod, no pods/status":   {rules: noStatus, gated: true, wantErr: "may not patch pods/status"},
		"ungated pod, no pods/status": {rules: noStatus},
	} {
		t.Run(name, func(t *testing.T) {
			ns := strings.ReplaceAll(strings.ReplaceAll(strings.ToLower(name), " ", "-"), ",", "")
			ns = strings.ReplaceAll(ns, "/", "-")
			cfg := workerConfig(ctx, t, env, ns, tc.rules)
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "w-0", Namespace: ns},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "w"}}},
			}
			if tc.gated {
				pod.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: ConditionTakingTasks}}
			}
			// No controller-manager here makes the namespace's default
			// ServiceAccount, which pod admission looks up.
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
			if _, err := env.Clientset.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			pod, err := env.Clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			kube := kubernetes.NewForConfigOrDie(cfg)
			wrote, err := markTakingTasks(ctx, kube, pod, time.Now())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("markTakingTasks error = %v, want one naming %q", err, tc.wantErr)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil || wrote != tc.wantWrote {
				t.Fatalf("markTakingTasks = %v, %v; want %v, nil", wrote, err, tc.wantWrote)
			}
			got, err := env.Clientset.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if set := conditionTrue(got, ConditionTakingTasks); set != tc.wantWrote {
				t.Fatalf("condition %s True = %v, want %v (conditions %+v)", ConditionTakingTasks, set, tc.wantWrote, got.Status.Conditions)
			}
			if again, err := markTakingTasks(ctx, kube, got, time.Now()); again || err != nil {
				t.Fatalf("second markTakingTasks = %v, %v; want no write", again, err)
			}
		})
	}
}
