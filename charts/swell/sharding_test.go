package chart_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// controllerContainer is the controller container of the rendered
// Deployment, so tests compare whole arguments ("--leader-elect" is also a
// prefix of the timing flags).
func controllerContainer(t *testing.T, out map[string]string) (args, env []string) {
	t.Helper()
	var dep appsv1.Deployment
	if err := yaml.Unmarshal([]byte(out["swell/templates/deployment.yaml"]), &dep); err != nil {
		t.Fatalf("deployment: %v", err)
	}
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name != "controller" {
			continue
		}
		for _, e := range c.Env {
			env = append(env, e.Name)
		}
		return c.Args, env
	}
	t.Fatal("no controller container rendered")
	return nil, nil
}

// rbacDocs splits a rendered RBAC template into its ClusterRoles, Roles and
// bindings by kind.
type rbacDocs struct {
	clusterRoles []rbacv1.ClusterRole
	roles        []rbacv1.Role
	bindings     []rbacv1.RoleRef // of ClusterRoleBindings and RoleBindings
}

func parseRBAC(t *testing.T, text string) rbacDocs {
	t.Helper()
	var d rbacDocs
	for _, doc := range strings.Split(text, "\n---") {
		var m struct {
			Kind    string         `json:"kind"`
			RoleRef rbacv1.RoleRef `json:"roleRef"`
		}
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
		switch m.Kind {
		case "ClusterRole":
			var cr rbacv1.ClusterRole
			if err := yaml.UnmarshalStrict([]byte(doc), &cr); err != nil {
				t.Fatal(err)
			}
			d.clusterRoles = append(d.clusterRoles, cr)
		case "Role":
			var r rbacv1.Role
			if err := yaml.UnmarshalStrict([]byte(doc), &r); err != nil {
				t.Fatal(err)
			}
			d.roles = append(d.roles, r)
		case "ClusterRoleBinding", "RoleBinding":
			d.bindings = append(d.bindings, m.RoleRef)
		}
	}
	return d
}

// shardingRoleRules are the rules of config/rbac/sharding/role.yaml, which
// the chart's sharding ClusterRole must grant exactly.
func shardingRoleRules(t *testing.T) []rbacv1.PolicyRule {
	t.Helper()
	b, err := os.ReadFile("../../config/rbac/sharding/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var r rbacv1.ClusterRole
	if err := yaml.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r.Rules
}

// TestRenderSharding checks sharding.enabled: the controller joins the
// shard ring instead of electing a leader, keeps the election timings
// (they time the ring's Leases) and POD_NAMESPACE (the Leases' namespace),
// gets the lease Role even without leaderElection, and the ClusterRole of
// config/rbac/sharding; off, none of it is rendered; with node pools on,
// rendering fails naming both values.
func TestRenderSharding(t *testing.T) {
	noPools := map[string]any{"enabled": false}
	timings := []string{"--leader-elect-lease-duration=60s", "--leader-elect-renew-deadline=40s", "--leader-elect-retry-period=5s"}
	tests := []struct {
		name string
		vals map[string]any
		// ring is the --shard-ring value expected; "" expects no ring.
		ring        string
		leaderElect bool
		leaseRole   bool
		poolsOnly   bool
		wantErr     []string
	}{
		{
			name: "default values: leader election, no ring",
			vals: nil, leaderElect: true, leaseRole: true,
		},
		{
			name: "sharding off, leader election off: neither",
			vals: map[string]any{"leaderElection": map[string]any{"enabled": false}},
		},
		{
			name: "sharding on: the ring instead of leader election",
			vals: map[string]any{"sharding": map[string]any{"enabled": true}, "nodePools": noPools},
			ring: "swell", leaseRole: true,
		},
		{
			name: "sharding on, leader election off: still the lease Role",
			vals: map[string]any{
				"sharding": map[string]any{"enabled": true, "ring": "team-a"}, "nodePools": noPools,
				"leaderElection": map[string]any{"enabled": false},
			},
			ring: "team-a", leaseRole: true,
		},
		{
			name:    "sharding on with node pools on: refused",
			vals:    map[string]any{"sharding": map[string]any{"enabled": true}},
			wantErr: []string{"sharding.enabled", "nodePools.enabled"},
		},
		{
			name: "node pools only: leader-elected, beside a sharded release",
			vals: map[string]any{"nodePools": map[string]any{"only": true}}, leaderElect: true, leaseRole: true, poolsOnly: true,
		},
		{
			name:    "node pools only in a ring: refused",
			vals:    map[string]any{"nodePools": map[string]any{"only": true}, "sharding": map[string]any{"enabled": true}},
			wantErr: []string{"nodePools.only", "sharding.enabled=false"},
		},
		{
			name:    "sharding on without a ring name: refused",
			vals:    map[string]any{"sharding": map[string]any{"enabled": true, "ring": ""}, "nodePools": noPools},
			wantErr: []string{"sharding.ring"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := renderErr(t, tt.vals)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatal("rendered; want an error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not name %s", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			args, env := controllerContainer(t, out)
			if got := slices.Contains(args, "--shard-ring="+tt.ring); tt.ring != "" && !got {
				t.Errorf("args %q lack --shard-ring=%s", args, tt.ring)
			}
			if tt.ring == "" && slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--shard-ring") }) {
				t.Errorf("sharding off, yet args %q join a ring", args)
			}
			if got := slices.Contains(args, "--leader-elect"); got != tt.leaderElect {
				t.Errorf("--leader-elect passed: %v, want %v (args %q)", got, tt.leaderElect, args)
			}
			for _, f := range timings {
				if got := slices.Contains(args, f); got != tt.leaseRole {
					t.Errorf("%s passed: %v, want %v (args %q)", f, got, tt.leaseRole, args)
				}
			}
			if got := slices.Contains(args, "--node-pools-only"); got != tt.poolsOnly {
				t.Errorf("--node-pools-only passed: %v, want %v (args %q)", got, tt.poolsOnly, args)
			}
			if !slices.Contains(env, "POD_NAMESPACE") {
				t.Errorf("env %q lacks POD_NAMESPACE", env)
			}
			checkLeaseRole(t, out, tt.leaseRole)
			checkShardingRole(t, out, tt.ring != "")
		})
	}
}

// checkLeaseRole asserts the lease Role and its binding are rendered or not.
func checkLeaseRole(t *testing.T, out map[string]string, want bool) {
	t.Helper()
	d := parseRBAC(t, out["swell/templates/leader-election.yaml"])
	if !want {
		if len(d.roles)+len(d.bindings) != 0 {
			t.Errorf("lease Role rendered: %+v", d)
		}
		return
	}
	if len(d.roles) != 1 || len(d.bindings) != 1 || d.bindings[0].Name != d.roles[0].Name {
		t.Fatalf("want one lease Role and its RoleBinding, got %+v", d)
	}
	for _, v := range []string{"get", "list", "watch", "create", "update", "delete"} {
		if !grants(d.roles[0].Rules, "coordination.k8s.io", "leases", v) {
			t.Errorf("lease Role cannot %s leases", v)
		}
	}
}

// checkShardingRole asserts the sharding ClusterRole (exactly the rules of
// config/rbac/sharding/role.yaml) and its binding are rendered or not, and
// that the main ClusterRole never carries those rules.
func checkShardingRole(t *testing.T, out map[string]string, want bool) {
	t.Helper()
	if grants(clusterRole(t, out).Rules, "quickube.com", "qworkers", "patch") {
		t.Error("the main ClusterRole grants patch on qworkers; it belongs to the -sharding role")
	}
	d := parseRBAC(t, out["swell/templates/sharding.yaml"])
	if !want {
		if len(d.clusterRoles)+len(d.bindings) != 0 {
			t.Errorf("sharding off, yet sharding RBAC rendered: %+v", d)
		}
		return
	}
	if len(d.clusterRoles) != 1 || len(d.bindings) != 1 {
		t.Fatalf("want one sharding ClusterRole and its ClusterRoleBinding, got %+v", d)
	}
	cr := d.clusterRoles[0]
	if ref := d.bindings[0]; ref.Kind != "ClusterRole" || ref.Name != cr.Name {
		t.Errorf("binding refers to %s %s, want ClusterRole %s", ref.Kind, ref.Name, cr.Name)
	}
	if got, want := ruleKeys(cr.Rules), ruleKeys(shardingRoleRules(t)); !slices.Equal(got, want) {
		t.Errorf("sharding ClusterRole rules differ from config/rbac/sharding/role.yaml (run make generate)\nchart: %v\nrole.yaml: %v", got, want)
	}
}

// TestLintSharding is `helm lint --strict` with sharding on (and node pools
// off, as it requires).
func TestLintSharding(t *testing.T) {
	vals := map[string]any{"sharding": map[string]any{"enabled": true}, "nodePools": map[string]any{"enabled": false}, "replicas": 3}
	res := lint.AllWithKubeVersion(".", vals, "swell-system", nil)
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("helm lint (values %v): %s", vals, m)
		}
	}
}
