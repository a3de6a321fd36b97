package chart_test

import (
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// workerRole reads config/rbac/qworker-worker/role.yaml, the worker Role
// the chart must render unchanged.
func workerRole(t *testing.T) rbacv1.Role {
	t.Helper()
	b, err := os.ReadFile("../../config/rbac/qworker-worker/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var r rbacv1.Role
	if err := yaml.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func ruleKeys(rules []rbacv1.PolicyRule) []string {
	k := make([]string, 0, len(rules))
	for _, r := range rules {
		k = append(k, r.String())
	}
	sort.Strings(k)
	return k
}

// TestRenderWorkerRBAC: off by default; enabled, each listed namespace gets
// a Role with exactly config/rbac/qworker-worker's rules, a RoleBinding of
// that Role to the ServiceAccount in the same namespace, and the
// ServiceAccount unless createServiceAccount is false.
func TestRenderWorkerRBAC(t *testing.T) {
	for _, o := range objects(t, render(t, nil)) {
		if o.GetLabels()["app.kubernetes.io/component"] == "qworker-worker" || o.GetName() == "swell-qworker-worker" {
			t.Errorf("default values render %s %s/%s; workerRBAC is off by default", o.GetKind(), o.GetNamespace(), o.GetName())
		}
	}
	want := ruleKeys(workerRole(t).Rules)
	namespaces := []string{"jobs", "batch"}
	for _, createSA := range []bool{true, false} {
		vals := map[string]any{"workerRBAC": map[string]any{"enabled": true, "namespaces": []any{"jobs", "batch"}, "createServiceAccount": createSA}}
		objs := objects(t, render(t, vals))
		var roleNS, bindingNS, saNS []string
		for _, o := range objs {
			if o.GetLabels()["app.kubernetes.io/component"] != "qworker-worker" {
				continue
			}
			if o.GetName() != "swell-qworker-worker" {
				t.Errorf("%s named %q, want swell-qworker-worker", o.GetKind(), o.GetName())
			}
			switch o.GetKind() {
			case "Role":
				var r rbacv1.Role
				if !typed(t, []*unstructured.Unstructured{o}, "Role", o.GetName(), &r) {
					t.Fatal("Role not converted")
				}
				if got := ruleKeys(r.Rules); !slices.Equal(got, want) {
					t.Errorf("Role in %s: rules %v, want config/rbac/qworker-worker's %v", o.GetNamespace(), got, want)
				}
				roleNS = append(roleNS, o.GetNamespace())
			case "RoleBinding":
				var b rbacv1.RoleBinding
				if !typed(t, []*unstructured.Unstructured{o}, "RoleBinding", o.GetName(), &b) {
					t.Fatal("RoleBinding not converted")
				}
				sub := b.Subjects
				if b.RoleRef.Kind != "Role" || b.RoleRef.Name != "swell-qworker-worker" || len(sub) != 1 ||
					sub[0].Kind != "ServiceAccount" || sub[0].Name != "swell-qworker-worker" || sub[0].Namespace != o.GetNamespace() {
					t.Errorf("RoleBinding in %s: roleRef %+v subjects %+v, want the Role and the ServiceAccount of that namespace", o.GetNamespace(), b.RoleRef, sub)
				}
				bindingNS = append(bindingNS, o.GetNamespace())
			case "ServiceAccount":
				var sa corev1.ServiceAccount
				if !typed(t, []*unstructured.Unstructured{o}, "ServiceAccount", o.GetName(), &sa) {
					t.Fatal("ServiceAccount not converted")
				}
				saNS = append(saNS, o.GetNamespace())
			default:
				t.Errorf("unexpected %s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
			}
		}
		if !slices.Equal(roleNS, namespaces) || !slices.Equal(bindingNS, namespaces) {
			t.Errorf("createServiceAccount=%v: Roles in %v, RoleBindings in %v, want one of each in %v", createSA, roleNS, bindingNS, namespaces)
		}
		if wantSA := map[bool][]string{true: namespaces, false: nil}[createSA]; !slices.Equal(saNS, wantSA) {
			t.Errorf("createServiceAccount=%v: ServiceAccounts in %v, want %v", createSA, saNS, wantSA)
		}
	}
}

// TestRenderWorkerRBACNeedsNamespaces: enabled without namespaces fails with
// an error naming the field, and the enabled chart lints clean.
func TestRenderWorkerRBACNeedsNamespaces(t *testing.T) {
	_, err := renderErr(t, map[string]any{"workerRBAC": map[string]any{"enabled": true}})
	if err == nil || !strings.Contains(err.Error(), "workerRBAC.namespaces") {
		t.Errorf("workerRBAC.enabled without namespaces: error %v, want one naming workerRBAC.namespaces", err)
	}
	vals := map[string]any{"workerRBAC": map[string]any{"enabled": true, "namespaces": []any{"jobs"}}}
	for _, m := range lint.AllWithKubeVersion(".", vals, "swell-system", nil).Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("helm lint with workerRBAC enabled: %s", m)
		}
	}
}
