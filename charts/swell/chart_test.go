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
// (mutual TLS, secrets, credential bindings, plugins), a ServiceMonitor and
// the controller's egress lists.
func TestLint(t *testing.T) {
	full := map[string]any{
		"externalScaler": map[string]any{
			"enabled":     true,
			"tls":         map[string]any{"secretName": "scaler-tls", "clientCA": map[string]any{"enabled": true}},
			"secrets":     map[string]any{"secretName": "creds"},
			"credentials": []any{map[string]any{"name": "redis-password", "addresses": []any{"redis.queues.svc:6379"}}},
			"plugins":     map[string]any{"plugins": map[string]any{"p": map[string]any{"groups": []any{"g"}}}},
		},
		"metrics":     map[string]any{"serviceMonitor": map[string]any{"enabled": true}},
		"egressAllow": []any{"10.96.0.0/12"},
		"egressDeny":  []any{"203.0.113.0/24"},
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
			if x == s || x == "*" || (strings.HasPrefix(x, "*/") && strings.HasSuffix(s, x[1:])) {
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

// TestRenderRBACPerJob checks that the chart grants each job's rules only
// when that job is on: node rules with node pools, node create and delete
// only for kwok, the scale subresource of other kinds only when named (or
// with anyScaleTarget), and Secrets cluster-wide or in listed namespaces.
func TestRenderRBACPerJob(t *testing.T) {
	def := clusterRole(t, render(t, nil))
	for _, v := range []string{"list", "watch", "patch", "update"} {
		if !grants(def.Rules, "", "nodes", v) {
			t.Errorf("default values: ClusterRole cannot %s nodes", v)
		}
	}
	for _, v := range []string{"create", "delete"} {
		if grants(def.Rules, "", "nodes", v) {
			t.Errorf("default values: ClusterRole can %s nodes; only nodePools.kwok should grant it", v)
		}
	}
	if !grants(def.Rules, "quickube.com", "qworkers", "list") || !grants(def.Rules, "", "pods", "create") {
		t.Error("default values: ClusterRole misses the QWorker rules")
	}
	if !grants(def.Rules, "apps", "deployments/scale", "patch") || !grants(def.Rules, "quickube.com", "qworkers/scale", "patch") {
		t.Error("default values: ClusterRole cannot scale Deployments or QWorkers")
	}
	if grants(def.Rules, "argoproj.io", "rollouts/scale", "patch") {
		t.Error("default values: ClusterRole scales any kind (*/scale)")
	}
	if grants(def.Rules, "", "secrets", "get") {
		t.Error("the main ClusterRole grants Secrets; they belong to the -secrets role")
	}

	kwok := clusterRole(t, render(t, map[string]any{"nodePools": map[string]any{"enabled": true, "kwok": true}}))
	if !grants(kwok.Rules, "", "nodes", "create") || !grants(kwok.Rules, "", "nodes", "delete") {
		t.Error("nodePools.kwok=true: ClusterRole cannot create and delete nodes")
	}

	for _, r := range []struct{ group, resource, verb string }{
		{"cluster.x-k8s.io", "machinedeployments/scale", "update"}, {"cluster.x-k8s.io", "machines", "patch"},
		{"autoscaling.x-k8s.io", "capacitybuffers", "create"}, {"", "podtemplates", "create"},
	} {
		if grants(def.Rules, r.group, r.resource, r.verb) {
			t.Errorf("default values: ClusterRole can %s %s.%s; only nodePools.clusterAPI / capacityBuffer should grant it", r.verb, r.resource, r.group)
		}
	}
	capi := clusterRole(t, render(t, map[string]any{"nodePools": map[string]any{"enabled": true, "clusterAPI": true}}))
	if !grants(capi.Rules, "cluster.x-k8s.io", "machinedeployments", "get") || !grants(capi.Rules, "cluster.x-k8s.io", "machinedeployments/scale", "update") ||
		!grants(capi.Rules, "cluster.x-k8s.io", "machines", "patch") {
		t.Error("nodePools.clusterAPI=true: ClusterRole misses the Cluster API rules")
	}
	if grants(capi.Rules, "autoscaling.x-k8s.io", "capacitybuffers", "create") || grants(capi.Rules, "cluster.x-k8s.io", "machines", "delete") {
		t.Error("nodePools.clusterAPI=true grants more than config/rbac/clusterapi")
	}
	buf := clusterRole(t, render(t, map[string]any{"nodePools": map[string]any{"enabled": true, "capacityBuffer": true}}))
	if !grants(buf.Rules, "autoscaling.x-k8s.io", "capacitybuffers", "patch") || !grants(buf.Rules, "", "podtemplates", "update") {
		t.Error("nodePools.capacityBuffer=true: ClusterRole misses the CapacityBuffer rules")
	}
	if grants(buf.Rules, "cluster.x-k8s.io", "machines", "patch") {
		t.Error("nodePools.capacityBuffer=true grants the Cluster API rules")
	}

	off := clusterRole(t, render(t, map[string]any{"nodePools": map[string]any{"enabled": false, "kwok": true, "clusterAPI": true, "capacityBuffer": true}}))
	for _, v := range []string{"list", "watch", "create", "update", "delete", "patch"} {
		if grants(off.Rules, "", "nodes", v) {
			t.Errorf("nodePools.enabled=false: ClusterRole can still %s nodes", v)
		}
	}
	if grants(off.Rules, "swell.dev", "nodepoolscalers", "list") {
		t.Error("nodePools.enabled=false still grants the NodePoolScaler rules")
	}
	if grants(off.Rules, "cluster.x-k8s.io", "machines", "patch") || grants(off.Rules, "autoscaling.x-k8s.io", "capacitybuffers", "create") {
		t.Error("nodePools.enabled=false still grants the Cluster API or CapacityBuffer rules")
	}

	named := clusterRole(t, render(t, map[string]any{"podAutoscalers": map[string]any{
		"scaleTargets": []any{map[string]any{"apiGroup": "argoproj.io", "resource": "rollouts"}},
	}}))
	if !grants(named.Rules, "argoproj.io", "rollouts/scale", "patch") || grants(named.Rules, "example.com", "things/scale", "patch") {
		t.Error("podAutoscalers.scaleTargets: want exactly the named kind's scale subresource")
	}
	anyKind := clusterRole(t, render(t, map[string]any{"podAutoscalers": map[string]any{"anyScaleTarget": true}}))
	if !grants(anyKind.Rules, "example.com", "things/scale", "patch") || grants(anyKind.Rules, "example.com", "things", "get") {
		t.Error("podAutoscalers.anyScaleTarget: want every kind's scale subresource and nothing else")
	}
}

// TestRenderSecretAccess checks where the chart lets Swell read Secrets.
func TestRenderSecretAccess(t *testing.T) {
	docs := func(out map[string]string) (kinds []string) {
		for _, doc := range strings.Split(out["swell/templates/clusterrole.yaml"], "\n---") {
			var m struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name, Namespace string
				} `json:"metadata"`
				RoleRef rbacv1.RoleRef `json:"roleRef"`
			}
			if err := yaml.Unmarshal([]byte(doc), &m); err != nil || m.Kind == "" {
				continue
			}
			if strings.HasSuffix(m.RoleRef.Name, "-secrets") {
				kinds = append(kinds, m.Kind+"/"+m.Metadata.Namespace)
			}
		}
		return kinds
	}
	if got := docs(render(t, nil)); len(got) != 1 || got[0] != "ClusterRoleBinding/" {
		t.Errorf("default values: Secret bindings %v, want one ClusterRoleBinding", got)
	}
	got := docs(render(t, map[string]any{"rbac": map[string]any{"secretNamespaces": []any{"team-a", "team-b"}}}))
	if len(got) != 2 || got[0] != "RoleBinding/team-a" || got[1] != "RoleBinding/team-b" {
		t.Errorf("rbac.secretNamespaces=[team-a team-b]: Secret bindings %v, want a RoleBinding in each and no ClusterRoleBinding", got)
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
// exactly config/rbac/role.yaml plus config/rbac/nodepools/role.yaml, which
// controller-gen writes (make generate).
func TestRulesInSync(t *testing.T) {
	var gen rbacv1.ClusterRole
	for _, f := range []string{"../../config/rbac/role.yaml", "../../config/rbac/nodepools/role.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r rbacv1.ClusterRole
		if err := yaml.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		gen.Rules = append(gen.Rules, r.Rules...)
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
		t.Errorf("chart rules differ from config/rbac/role.yaml + nodepools/role.yaml: run make generate\nchart: %+v\nrole.yaml: %+v", got.Rules, gen.Rules)
	}
}
