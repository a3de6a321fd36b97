package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/controller"
	"github.com/swell-autoscaler/swell/pkg/egress"
)

// The Swell controller runs in this test process against the shared
// environment, started by the first test that needs it and stopped by
// TestMain.
var (
	controllerOnce sync.Once
	controllerErr  error
	stopController = func() {}
	kube           client.Client
)

// startController installs the CRDs, starts Swell's manager (the same
// assembly `swell controller` runs) with the permissions of the shipped
// ClusterRole only (controllerIdentity), and returns an admin client for
// Swell's kinds.
func startController(t *testing.T) client.Client {
	t.Helper()
	controllerOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if controllerErr = env.InstallCRDs(ctx, "../../config/crd/bases"); controllerErr != nil {
			return
		}
		logFile, err := os.Create(filepath.Join(env.Dir, "swell-controller.log"))
		if err != nil {
			controllerErr = err
			return
		}
		ctrl.SetLogger(zap.New(zap.WriteTo(logFile), zap.UseDevMode(true)))
		cfg, err := controllerIdentity(ctx)
		if err != nil {
			controllerErr = err
			return
		}
		runCtx, stop := context.WithCancel(context.Background())
		mgr, err := controller.New(runCtx, cfg, controller.Options{
			MetricsAddr: "0", ProbeAddr: "0", GracefulShutdown: 5 * time.Second,
			// The suite's metric and evaluate servers listen on 127.0.0.1,
			// allowed here as an operator would allow an in-cluster range;
			// the rest of loopback (127.0.0.2 stands in for an internal
			// address) and the API server stay refused.
			Egress: egress.Config{Allow: []string{"127.0.0.1/32"}},
		})
		if err != nil {
			stop()
			controllerErr = err
			return
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := mgr.Start(runCtx); err != nil {
				fmt.Printf("e2e: controller stopped: %v\n", err)
			}
		}()
		stopController = func() { stop(); <-done }
		scheme, err := controller.NewScheme(qv1.AddToScheme, swellv1.AddToScheme)
		if err != nil {
			controllerErr = err
			return
		}
		kube, controllerErr = client.New(env.RESTConfig, client.Options{Scheme: scheme})
	})
	if controllerErr != nil {
		t.Fatalf("start Swell controller: %v", controllerErr)
	}
	return kube
}

// controllerServiceAccount is who the in-process controller acts as: the
// ServiceAccount config/rbac binds the ClusterRole to.
const controllerServiceAccount = "system:serviceaccount:swell-system:swell-controller"

// controllerRoles are the config/rbac roles the suite's controller holds:
// the default install (jobs, node pools, Secrets) plus the kwok option, since
// the suite's node pools are kwok's. Not any-scale-target: a PodAutoscaler
// test on another kind must grant it, as an operator would.
var controllerRoles = []string{"role.yaml", "nodepools/role.yaml", "secrets/role.yaml", "kwok/role.yaml"}

// controllerIdentity applies config/rbac's ClusterRoles and binds it to
// controllerServiceAccount, and returns a client config that impersonates
// that ServiceAccount, so every e2e test runs the controller with exactly
// the permissions a real install grants: a rule missing from role.yaml
// fails the test that needs it, as it would fail in a cluster.
func controllerIdentity(ctx context.Context) (*rest.Config, error) {
	role := &rbacv1.ClusterRole{}
	for _, f := range controllerRoles {
		raw, err := os.ReadFile(filepath.Join("../../config/rbac", f))
		if err != nil {
			return nil, err
		}
		var r rbacv1.ClusterRole
		if err := yaml.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("config/rbac/%s: %w", f, err)
		}
		role.Rules = append(role.Rules, r.Rules...)
	}
	role.Name = "swell-e2e-controller"
	if _, err := env.Clientset.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create ClusterRole: %w", err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "swell-controller", Namespace: "swell-system"}},
	}
	if _, err := env.Clientset.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create ClusterRoleBinding: %w", err)
	}
	cfg := rest.CopyConfig(env.RESTConfig)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: controllerServiceAccount,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:swell-system", "system:authenticated"},
	}
	return cfg, nil
}
