package e2e

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/swell-autoscaler/swell/internal/testenv"
)

// TestChartInstall renders charts/swell with helm's Go module (values:
// nodePools.enabled=false), server-side applies the CRDs and every rendered
// object to the real apiserver, and then, impersonating the chart's
// ServiceAccount, shows its RBAC is least privilege: it can list QWorkers
// and pods, and cannot list Secrets or delete nodes.
func TestChartInstall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const release, ns = "chart-e2e", "swell-chart-e2e"

	crds, objs := renderChart(t, release, ns, map[string]any{"nodePools": map[string]any{"enabled": false}})
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
	}
	for _, k := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment"} {
		if kinds[k] == 0 {
			t.Fatalf("chart rendered no %s (got %v)", k, kinds)
		}
	}
	installChart(ctx, t, env, release, ns, crds, objs)

	// Least privilege, as the chart's ServiceAccount.
	sa := fmt.Sprintf("system:serviceaccount:%s:%s-swell", ns, release)
	cfg := rest.CopyConfig(env.RESTConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: sa}
	as, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	asDyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	qworkers := schema.GroupVersionResource{Group: "quickube.com", Version: "v1alpha1", Resource: "qworkers"}
	// RBAC reaches the authorizer through an informer: allow it a moment.
	if err := chartPoll(ctx, func() error {
		if _, err := asDyn.Resource(qworkers).List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
			return fmt.Errorf("list qworkers: %w", err)
		}
		if _, err := as.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
			return fmt.Errorf("list pods: %w", err)
		}
		return nil
	}); err != nil {
		t.Fatalf("%s: %v", sa, err)
	}
	if _, err := as.CoreV1().Secrets("").List(ctx, metav1.ListOptions{Limit: 1}); !apierrors.IsForbidden(err) {
		t.Errorf("%s listing secrets: err = %v, want Forbidden", sa, err)
	}
	if _, err := as.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{Limit: 1}); !apierrors.IsForbidden(err) {
		t.Errorf("%s listing secrets in its own namespace: err = %v, want Forbidden", sa, err)
	}
	// No blanket get: reading an arbitrary kind (a ConfigMap here) is denied
	// before the lookup, so a missing name still answers Forbidden.
	if _, err := as.CoreV1().ConfigMaps(ns).Get(ctx, "swell-chart-e2e-no-such-configmap", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("%s getting a configmap: err = %v, want Forbidden", sa, err)
	}
	// Authorization comes before the lookup: an allowed delete of a missing
	// node is NotFound, a denied one Forbidden. DryRun in case it exists.
	err = as.CoreV1().Nodes().Delete(ctx, "swell-chart-e2e-no-such-node", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
	if !apierrors.IsForbidden(err) {
		t.Errorf("%s deleting a node with nodePools disabled: err = %v, want Forbidden", sa, err)
	}
	nodes, err := env.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) > 0 {
		err = as.CoreV1().Nodes().Delete(ctx, nodes.Items[0].Name, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s deleting node %s (dry run): err = %v, want Forbidden", sa, nodes.Items[0].Name, err)
		}
	}
}

// renderChart renders charts/swell with helm's Go module: its CRDs and the
// objects of its templates, in file order.
func renderChart(t *testing.T, release, ns string, values map[string]any) (crds, objs []*unstructured.Unstructured) {
	t.Helper()
	ch, err := loader.Load("../../charts/swell")
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ToRenderValues(ch, values,
		chartutil.ReleaseOptions{Name: release, Namespace: ns, IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := engine.Render(ch, vals)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ch.CRDObjects() {
		crds = append(crds, chartDocs(t, c.Filename, string(c.File.Data))...)
	}
	names := make([]string, 0, len(rendered))
	for name := range rendered {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.HasSuffix(name, ".yaml") {
			objs = append(objs, chartDocs(t, name, rendered[name])...)
		}
	}
	return crds, objs
}

// installChart server-side applies the CRDs and then every rendered object
// to e's apiserver (namespace ns, created if missing), waits until the CRDs
// are served, and removes the release's objects when the test ends.
func installChart(ctx context.Context, t *testing.T, e *testenv.Env, release, ns string, crds, objs []*unstructured.Unstructured) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(e.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(e.Clientset.Discovery()))
	apply := func(o *unstructured.Unstructured) error {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			mapper.Reset()
			return fmt.Errorf("map %s: %w", gvk, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if o.GetNamespace() == "" {
				o.SetNamespace(ns)
			}
			ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		b, err := o.MarshalJSON()
		if err != nil {
			return err
		}
		force := true // the shared environment installs the same CRDs with another manager
		_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, b, metav1.PatchOptions{FieldManager: "swell-chart-e2e", Force: &force})
		if err != nil {
			return fmt.Errorf("apply %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		return nil
	}
	for _, c := range crds {
		if err := apply(c); err != nil {
			t.Fatal(err)
		}
	}
	// Every rendered object; retried while the apiserver catches up.
	for _, o := range objs {
		if err := chartPoll(ctx, func() error { return apply(o) }); err != nil {
			t.Fatalf("apiserver did not accept %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		_ = e.Clientset.AppsV1().Deployments(ns).Delete(cctx, release+"-swell", metav1.DeleteOptions{})
		_ = e.Clientset.RbacV1().ClusterRoleBindings().Delete(cctx, release+"-swell", metav1.DeleteOptions{})
		_ = e.Clientset.RbacV1().ClusterRoles().Delete(cctx, release+"-swell", metav1.DeleteOptions{})
		_ = e.Clientset.CoreV1().Namespaces().Delete(cctx, ns, metav1.DeleteOptions{})
	})
	if err := chartPoll(ctx, func() error {
		for _, c := range crds {
			gk := schema.GroupKind{Group: chartString(c, "spec", "group"), Kind: chartString(c, "spec", "names", "kind")}
			if _, err := mapper.RESTMapping(gk); err != nil {
				mapper.Reset()
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("chart CRDs not served: %v", err)
	}
}

func chartDocs(t *testing.T, name, text string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, doc := range strings.Split(text, "\n---") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out
}

func chartString(o *unstructured.Unstructured, fields ...string) string {
	s, _, _ := unstructured.NestedString(o.Object, fields...)
	return s
}

func chartPoll(ctx context.Context, f func() error) error {
	var last error
	for {
		if last = f(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
