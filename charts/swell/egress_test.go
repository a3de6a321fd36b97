package chart_test

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// flagsWithPrefix returns the args that start with one of prefixes, in order.
func flagsWithPrefix(args []string, prefixes ...string) []string {
	var got []string
	for _, a := range args {
		for _, p := range prefixes {
			if strings.HasPrefix(a, p) {
				got = append(got, a)
				break
			}
		}
	}
	return got
}

// controllerArgs renders the chart and returns the controller's args.
func controllerArgs(t *testing.T, vals map[string]any) []string {
	t.Helper()
	var dep appsv1.Deployment
	if !typed(t, objects(t, render(t, vals)), "Deployment", "swell", &dep) {
		t.Fatal("no controller Deployment rendered")
	}
	return dep.Spec.Template.Spec.Containers[0].Args
}

// TestRenderControllerEgress: each egressAllow / egressDeny entry becomes
// one --egress-allow / --egress-deny flag of the controller, before
// extraArgs; none by default, so the controller keeps its default refusals.
func TestRenderControllerEgress(t *testing.T) {
	for _, tc := range []struct {
		name         string
		allow, deny  []any
		want         []string
		withExtraArg bool
	}{
		{name: "default", want: nil},
		{name: "allow only", allow: []any{"10.96.0.0/12"}, want: []string{"--egress-allow=10.96.0.0/12"}},
		{
			name:  "allow and deny",
			allow: []any{"10.96.0.0/12", "prometheus.monitoring.svc:9090"},
			deny:  []any{"203.0.113.0/24"},
			want:  []string{"--egress-allow=10.96.0.0/12", "--egress-allow=prometheus.monitoring.svc:9090", "--egress-deny=203.0.113.0/24"},
		},
		{name: "with extraArgs", deny: []any{"198.51.100.0/24"}, want: []string{"--egress-deny=198.51.100.0/24"}, withExtraArg: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals := map[string]any{}
			if tc.allow != nil {
				vals["egressAllow"] = tc.allow
			}
			if tc.deny != nil {
				vals["egressDeny"] = tc.deny
			}
			if tc.withExtraArg {
				vals["extraArgs"] = []any{"--dev-logs"}
			}
			args := controllerArgs(t, vals)
			if got := flagsWithPrefix(args, "--egress-"); !slices.Equal(got, tc.want) {
				t.Errorf("egress args = %q, want %q (all args %q)", got, tc.want, args)
			}
			if tc.withExtraArg && args[len(args)-1] != "--dev-logs" {
				t.Errorf("extraArgs no longer last: %q", args)
			}
		})
	}
}

// TestRenderExternalScalerCredentialsAndDeny: each credentials entry
// becomes one --credential NAME=HOST:PORT[,HOST:PORT] flag and each
// egressDeny entry one --egress-deny, before extraArgs; none by default.
func TestRenderExternalScalerCredentialsAndDeny(t *testing.T) {
	secrets := map[string]any{"secretName": "broker-creds"}
	for _, tc := range []struct {
		name  string
		extra map[string]any
		want  []string
	}{
		{name: "default", extra: map[string]any{}, want: nil},
		{
			name: "one credential, one address",
			extra: map[string]any{"secrets": secrets, "credentials": []any{
				map[string]any{"name": "redis-password", "addresses": []any{"redis.queues.svc:6379"}},
			}},
			want: []string{"--credential=redis-password=redis.queues.svc:6379"},
		},
		{
			name: "two credentials, several addresses, and a deny",
			extra: map[string]any{"secrets": secrets, "egressDeny": []any{"203.0.113.0/24"}, "credentials": []any{
				map[string]any{"name": "kafka-password", "addresses": []any{"kafka-0.kafka:9092", "kafka-1.kafka:9092"}},
				map[string]any{"name": "prom-token", "addresses": []any{"prometheus.monitoring.svc:9090"}},
			}},
			want: []string{
				"--egress-deny=203.0.113.0/24",
				"--credential=kafka-password=kafka-0.kafka:9092,kafka-1.kafka:9092",
				"--credential=prom-token=prometheus.monitoring.svc:9090",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.extra["extraArgs"] = []any{"--log-json"}
			dep, _, _ := scalerObjects(t, enabledScaler(tc.extra))
			args := dep.Spec.Template.Spec.Containers[0].Args
			if got := flagsWithPrefix(args, "--credential", "--egress-deny"); !slices.Equal(got, tc.want) {
				t.Errorf("args = %q, want %q (all args %q)", got, tc.want, args)
			}
			if args[len(args)-1] != "--log-json" {
				t.Errorf("extraArgs no longer last: %q", args)
			}
		})
	}
}

// TestRenderExternalScalerCredentialsInvalid: an entry without a name or
// addresses, or credentials without the Secret they are files of, fail the
// render with a message naming the value.
func TestRenderExternalScalerCredentialsInvalid(t *testing.T) {
	secrets := map[string]any{"secretName": "broker-creds"}
	for _, tc := range []struct {
		name  string
		extra map[string]any
		want  string
	}{
		{name: "no addresses", extra: map[string]any{"secrets": secrets, "credentials": []any{map[string]any{"name": "redis-password"}}},
			want: "each entry needs name"},
		{name: "no name", extra: map[string]any{"secrets": secrets, "credentials": []any{map[string]any{"addresses": []any{"r:6379"}}}},
			want: "each entry needs name"},
		{name: "no secret", extra: map[string]any{"credentials": []any{map[string]any{"name": "p", "addresses": []any{"r:6379"}}}},
			want: "needs externalScaler.secrets.secretName"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderErr(t, enabledScaler(tc.extra))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render error = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRenderControllerRequireSecretAddresses: requireSecretAddresses adds
// --require-secret-addresses to the controller, before extraArgs; off by
// default, so Secrets without swell.dev/allowed-addresses keep working.
func TestRenderControllerRequireSecretAddresses(t *testing.T) {
	for _, tc := range []struct {
		name string
		vals map[string]any
		want []string
	}{
		{name: "default", vals: map[string]any{}, want: nil},
		{name: "false", vals: map[string]any{"requireSecretAddresses": false}, want: nil},
		{name: "true", vals: map[string]any{"requireSecretAddresses": true}, want: []string{"--require-secret-addresses"}},
		{name: "true with extraArgs", vals: map[string]any{"requireSecretAddresses": true, "extraArgs": []any{"--dev-logs"}}, want: []string{"--require-secret-addresses"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := controllerArgs(t, tc.vals)
			if got := flagsWithPrefix(args, "--require-secret-addresses"); !slices.Equal(got, tc.want) {
				t.Errorf("args %q, want %q among them (all args %q)", got, tc.want, args)
			}
			if _, ok := tc.vals["extraArgs"]; ok && args[len(args)-1] != "--dev-logs" {
				t.Errorf("extraArgs no longer last: %q", args)
			}
		})
	}
}
