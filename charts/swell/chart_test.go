package chart_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// TestLint is `helm lint --strict charts/swell` (warnings fail too), with
// default values, with nodePools disabled, and with the external scaler
// (mutual TLS, secrets, plugins) and a ServiceMonitor.
func TestLint(t *testing.T) {
	full := map[string]any{
		"externalScaler": map[string]any{
			"enabled": true,
			"tls":     map[string]any{"secretName": "scaler-tls", "clientCA": map[string]any{"enabled": true}},
			"secrets": map[string]any{"secretName": "creds"},
			"plugins": map[string]any{"plugins": map[string]any{"p": map[string]any{"groups": []any{"g"}}}},
		},
		"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}},
	}
	for _, vals := range []map[string]any{nil, {"nodePools": map[string]any{"enabled": false}}, full} {
		res := lint.AllWithKubeVersion(".", vals, "swell-system", nil)
		for _, m := range res.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("helm lint (values %v): %s", vals, m)
			}
		}
	}
}

func render(t *testing.T, vals map[string]any) map[string]string {
	t.Helper()
	ch, err := loader.Load(".")
	if err != nil {
		t.Fatal(err)
	}
	v, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "swell", Namespace: "swell-system", IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Render(ch, v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func clusterRole(t *testing.T, out map[string]string) rbacv1.ClusterRole {
	t.Helper()
	for _, doc := range strings.Split(out["swell/templates/clusterrole.yaml"], "\n---") {
		var cr rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict([]byte(doc), &cr); err != nil {
			continue // the binding
		}
		if cr.Kind == "ClusterRole" {
			return cr
		}
	}
	t.Fatal("no ClusterRole rendered")
	return rbacv1.ClusterRole{}
}

func grants(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	in := func(list []string, s string) bool {
		for _, x := range list {
			if x == s || x == "*" {
				return true
			}
		}
		return false
	}
	for _, r := range rules {
		if in(r.APIGroups, group) && in(r.Resources, resource) && in(r.Verbs, verb) {
			return true
		}
	}
	return false
}

func TestRenderNodeRules(t *testing.T) {
	def := clusterRole(t, render(t, nil))
	for _, v := range []string{"list", "watch", "create", "delete", "patch"} {
		if !grants(def.Rules, "", "nodes", v) {
			t.Errorf("default values: ClusterRole cannot %s nodes", v)
		}
	}
	if !grants(def.Rules, "quickube.com", "qworkers", "list") || !grants(def.Rules, "", "pods", "create") {
		t.Error("default values: ClusterRole misses the QWorker rules")
	}

	off := clusterRole(t, render(t, map[string]any{"nodePools": map[string]any{"enabled": false}}))
	for _, r := range off.Rules {
		for _, res := range r.Resources {
			if res == "nodes" {
				t.Errorf("nodePools.enabled=false still has a node rule: %+v", r)
			}
		}
	}
	for _, v := range []string{"list", "watch", "create", "update", "delete", "patch"} {
		if grants(off.Rules, "", "nodes", v) {
			t.Errorf("nodePools.enabled=false: ClusterRole can still %s nodes", v)
		}
	}
	if len(off.Rules) != len(def.Rules)-1 {
		t.Errorf("nodePools.enabled=false dropped %d rules, want exactly the node rule", len(def.Rules)-len(off.Rules))
	}
}

func TestRenderDeployment(t *testing.T) {
	out := render(t, map[string]any{"extraArgs": []any{"--dev-logs"}, "leaderElection": map[string]any{"enabled": false}})
	dep := out["swell/templates/deployment.yaml"]
	for _, want := range []string{"- controller", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081", `- "--dev-logs"`, "readOnlyRootFilesystem: true", "runAsNonRoot: true", "path: /healthz", "path: /readyz"} {
		if !strings.Contains(dep, want) {
			t.Errorf("deployment lacks %q:\n%s", want, dep)
		}
	}
	if strings.Contains(dep, "--leader-elect") || strings.TrimSpace(out["swell/templates/leader-election.yaml"]) != "" {
		t.Error("leaderElection.enabled=false still elects or grants leases")
	}
	if !strings.Contains(render(t, nil)["swell/templates/deployment.yaml"], "--leader-elect") {
		t.Error("default values do not pass --leader-elect")
	}
	off := render(t, map[string]any{"nodePools": map[string]any{"enabled": false}})["swell/templates/deployment.yaml"]
	if !strings.Contains(off, "--node-pools=false") {
		t.Error("nodePools.enabled=false does not turn the NodePoolScaler reconciler off (it would fail on the missing node permissions)")
	}
	if strings.Contains(dep, "--node-pools=false") {
		t.Error("default values turn the NodePoolScaler reconciler off")
	}
}

// TestCRDsInSync: charts/swell/crds is a copy of config/crd/bases (make generate).
func TestCRDsInSync(t *testing.T) {
	ch, err := loader.Load(".")
	if err != nil {
		t.Fatal(err)
	}
	want, err := filepath.Glob("../../config/crd/bases/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for _, c := range ch.CRDObjects() {
		got[filepath.Base(c.Filename)] = c.File.Data
	}
	if len(got) != len(want) {
		t.Errorf("chart has %d CRDs, config/crd/bases %d: run make generate", len(got), len(want))
	}
	for _, w := range want {
		b, err := os.ReadFile(w)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[filepath.Base(w)], b) {
			t.Errorf("charts/swell/crds/%s differs from %s: run make generate", filepath.Base(w), w)
		}
	}
}

// TestRulesInSync: with nodePools enabled the chart's ClusterRole grants
// exactly config/rbac/role.yaml, which controller-gen writes (make generate).
func TestRulesInSync(t *testing.T) {
	b, err := os.ReadFile("../../config/rbac/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var gen rbacv1.ClusterRole
	if err := yaml.Unmarshal(b, &gen); err != nil {
		t.Fatal(err)
	}
	got := clusterRole(t, render(t, nil))
	key := func(rules []rbacv1.PolicyRule) []string {
		var k []string
		for _, r := range rules {
			k = append(k, r.String())
		}
		sort.Strings(k)
		return k
	}
	if !slices.Equal(key(gen.Rules), key(got.Rules)) {
		t.Errorf("chart rules differ from config/rbac/role.yaml: run make generate\nchart: %+v\nrole.yaml: %+v", got.Rules, gen.Rules)
	}
}
