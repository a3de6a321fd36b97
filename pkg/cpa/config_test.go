package cpa

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const minimalYAML = `
scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
metric: {type: shell, timeout: 2500, shell: {entrypoint: python3, command: [/metric.py]}}
evaluate: {type: shell, shell: {entrypoint: python3, command: [/evaluate.py]}}
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadAppliesCPADefaults(t *testing.T) {
	cfg, err := Load(writeConfig(t, minimalYAML), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"interval", cfg.Interval, 15000},
		{"namespace", cfg.Namespace, "default"},
		{"minReplicas", cfg.MinReplicas, int32(1)},
		{"maxReplicas", cfg.MaxReplicas, int32(10)},
		{"runMode", cfg.RunMode, PerPod},
		{"startTime", cfg.StartTime, int64(1)},
		{"downscaleStabilization", cfg.DownscaleStabilization, 0},
		{"apiConfig", *cfg.APIConfig, APIConfig{Enabled: true, Port: 5000, Host: "0.0.0.0"}},
		{"initialReadinessDelay", cfg.InitialReadinessDelay, int64(30)},
		{"cpuInitializationPeriod", cfg.CPUInitializationPeriod, int64(300)},
		{"requireKubernetesMetrics", cfg.RequireKubernetesMetrics, false},
		{"logVerbosity", cfg.LogVerbosity, int32(0)},
		{"metric timeout", cfg.Metric.TimeoutDuration(), 2500 * time.Millisecond},
		{"evaluate timeout unset", cfg.Evaluate.TimeoutDuration(), DefaultMethodTimeout},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadEnvOverridesEveryKind(t *testing.T) {
	env := map[string]string{
		"interval":                 "200",
		"namespace":                "123", // stays a string
		"minReplicas":              "0",
		"runMode":                  "per-resource",
		"apiConfig":                `{"enabled": false}`,
		"scaleTargetRef":           "apiVersion: apps/v1\nkind: StatefulSet\nname: db",
		"evaluate":                 `{"type": "http", "http": {"method": "POST", "url": "http://e", "successCodes": [200], "parameterMode": "body"}}`,
		"kubernetesMetricSpecs":    `[{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}]`,
		"requireKubernetesMetrics": "true",
	}
	cfg, err := Load(writeConfig(t, minimalYAML), envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Interval != 200 || cfg.Namespace != "123" || cfg.MinReplicas != 0 || cfg.RunMode != PerResource {
		t.Errorf("scalars not overridden: %+v", cfg)
	}
	if cfg.APIConfig.Enabled {
		t.Error("apiConfig.enabled not overridden")
	}
	if cfg.ScaleTargetRef.Kind != "StatefulSet" || cfg.ScaleTargetRef.Name != "db" {
		t.Errorf("scaleTargetRef = %+v", cfg.ScaleTargetRef)
	}
	if cfg.Evaluate.Type != MethodHTTP || cfg.Evaluate.HTTP.ParameterMode != ParameterBody {
		t.Errorf("evaluate = %+v", cfg.Evaluate)
	}
	if len(cfg.KubernetesMetricSpecs) != 1 || cfg.KubernetesMetricSpecs[0].Resource.Name != "cpu" || !cfg.RequireKubernetesMetrics {
		t.Errorf("kubernetesMetricSpecs = %+v", cfg.KubernetesMetricSpecs)
	}
}

func TestLoadConfigPathFromEnv(t *testing.T) {
	p := writeConfig(t, minimalYAML+"interval: 777\n")
	cfg, err := Load("", envOf(map[string]string{"configPath": p}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Interval != 777 {
		t.Errorf("interval = %d, want 777 from $configPath", cfg.Interval)
	}
	if _, err := Load("", envOf(map[string]string{"configPath": p + ".missing"})); err == nil {
		t.Error("a missing explicit $configPath must be an error")
	}
}

func TestLoadPartialAPIConfigKeepsDefaults(t *testing.T) {
	cfg, err := Load(writeConfig(t, minimalYAML+"apiConfig: {port: 6000}\n"), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := (APIConfig{Enabled: true, Port: 6000, Host: "0.0.0.0"}); *cfg.APIConfig != want {
		t.Errorf("apiConfig = %+v, want %+v", *cfg.APIConfig, want)
	}
}

func TestLoadRejects(t *testing.T) {
	cases := []struct {
		name, extra string
		env         map[string]string
		want        string
	}{
		{"unknown key", "intervall: 5\n", nil, `unknown key "intervall"`},
		{"bad runMode", "runMode: per-node\n", nil, "runMode"},
		{"min above max", "minReplicas: 5\nmaxReplicas: 2\n", nil, "min must not exceed max"},
		{"negative min", "minReplicas: -1\n", nil, "minReplicas -1"},
		{"zero interval", "interval: 0\n", nil, "interval 0"},
		{"negative timeout", "preScale: {type: shell, timeout: -1, shell: {entrypoint: x}}\n", nil, "preScale.timeout"},
		{"unknown method type", "postScale: {type: grpc}\n", nil, `postScale.type "grpc"`},
		{"http without parameterMode", "preMetric: {type: http, http: {method: GET, url: 'http://x', successCodes: [200]}}\n", nil, "parameterMode"},
		{"http without successCodes", "preMetric: {type: http, http: {method: GET, url: 'http://x', parameterMode: query}}\n", nil, "successCodes"},
		{"https without cert", "apiConfig: {useHTTPS: true}\n", nil, "certFile"},
		{"bad metric spec", "kubernetesMetricSpecs: [{type: Resource}]\n", nil, "kubernetesMetricSpecs[0]"},
		{"bad behavior", "behavior: {scaleDown: {selectPolicy: Sometimes}}\n", nil, "selectPolicy"},
		{"env not yaml", "", map[string]string{"maxReplicas": "[1"}, "env maxReplicas"},
		{"env wrong type", "", map[string]string{"maxReplicas": "lots"}, "decode"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, minimalYAML+c.extra), envOf(c.env))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestLoadRequiresTargetAndMethods(t *testing.T) {
	_, err := Load(writeConfig(t, "interval: 100\n"), envOf(nil))
	for _, want := range []string{"scaleTargetRef", "metric: required", "evaluate: required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to mention %q", err, want)
		}
	}
}

func TestBehaviorConverts(t *testing.T) {
	cfg, err := Load(writeConfig(t, minimalYAML+`
behavior:
  scaleDown:
    stabilizationWindowSeconds: 60
    policies: [{type: Pods, value: 1, periodSeconds: 30}]
`), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := PolicyBehavior(cfg.Behavior)
	if err != nil {
		t.Fatal(err)
	}
	if *b.ScaleDown.StabilizationWindow != time.Minute || b.ScaleDown.Policies[0].Period != 30*time.Second {
		t.Errorf("behavior = %+v", b.ScaleDown)
	}
}
