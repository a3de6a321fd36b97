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
		{"apiConfig", *cfg.APIConfig, APIConfig{Enabled: true, Port: 5000, Host: "127.0.0.1"}},
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
	if want := (APIConfig{Enabled: true, Port: 6000, Host: "127.0.0.1"}); *cfg.APIConfig != want {
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
		{"env wrong type", "", map[string]string{"maxReplicas": "lots"}, `env maxReplicas="lots": maxReplicas: got a string, want int32`},
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

// TestLoadKeysCaseInsensitive pins CPA's key matching: file keys match
// their setting whatever their case, at every level (an exact match wins),
// while a key that matches nothing is still refused with its full path.
func TestLoadKeysCaseInsensitive(t *testing.T) {
	cases := []struct {
		name, yaml string
		check      func(*Config) bool
		wantErr    []string // all must appear; nil: accepted
	}{
		{"MaxReplicas", minimalYAML + "MaxReplicas: 2\n", func(c *Config) bool { return c.MaxReplicas == 2 }, nil},
		{"all caps", minimalYAML + "MINREPLICAS: 0\nRUNMODE: per-resource\n", func(c *Config) bool { return c.MinReplicas == 0 && c.RunMode == PerResource }, nil},
		{"nested keys", `
ScaleTargetRef: {ApiVersion: apps/v1, KIND: Deployment, Name: web}
Metric: {Type: shell, Timeout: 2500, Shell: {Entrypoint: python3, Command: [/metric.py], LogStderr: true}}
evaluate: {type: http, HTTP: {Method: POST, URL: "http://e", SuccessCodes: [200], ParameterMode: body}}
APIConfig: {Port: 6000}
`, func(c *Config) bool {
			return c.ScaleTargetRef.Kind == "Deployment" && c.ScaleTargetRef.APIVersion == "apps/v1" && c.Metric.Shell.Entrypoint == "python3" &&
				*c.Metric.Shell.LogStderr && c.Evaluate.HTTP.URL == "http://e" && c.APIConfig.Port == 6000 && c.APIConfig.Enabled
		}, nil},
		{"metric specs", minimalYAML + "KubernetesMetricSpecs: [{Type: Resource, Resource: {Name: cpu, Target: {Type: Utilization, AverageUtilization: 50}}}]\n",
			func(c *Config) bool {
				r := c.KubernetesMetricSpecs[0].Resource
				return r.Name == "cpu" && *r.Target.AverageUtilization == 50
			}, nil},
		{"unknown top-level key", minimalYAML + "maxReplica: 2\n", nil, []string{`unknown key "maxReplica"`}},
		{"unknown nested key", minimalYAML + "kubernetesMetricSpecs: [{type: Resource, rsrc: {name: cpu}}]\n", nil,
			[]string{`unknown key "kubernetesMetricSpecs[0].rsrc"`}},
		{"unknown deep key", minimalYAML + "preScale: {type: shell, shell: {entrypoint: x, comand: [a]}}\n", nil, []string{`unknown key "preScale.shell.comand"`}},
		{"unknown key in a label selector", minimalYAML + "kubernetesMetricSpecs: [{type: External, external: {metric: {name: q, selector: {matchLabel: {a: b}}}, target: {type: Value}}}]\n", nil,
			[]string{`unknown key "kubernetesMetricSpecs[0].external.metric.selector.matchLabel"`}},
		{"every unknown key named", minimalYAML + "intervall: 5\napiConfig: {prot: 1}\n", nil, []string{`unknown key "intervall"`, `unknown key "apiConfig.prot"`}},
		{"two spellings of one key", minimalYAML + "maxReplicas: 3\nMaxReplicas: 2\n", nil, []string{`keys "MaxReplicas" and "maxReplicas" both set "maxReplicas"`}},
		{"nested type error names its path", minimalYAML + "preScale: {type: shell, shell: {entrypoint: x, command: 5}}\n", nil, []string{"preScale.shell.command: got a number, want []string"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeConfig(t, c.yaml)
			cfg, err := Load(p, envOf(nil))
			if c.wantErr == nil {
				if err != nil || !c.check(cfg) {
					t.Fatalf("Load = %+v, %v; want accepted with the keys applied", cfg, err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted; want an error")
			}
			for _, w := range c.wantErr {
				if !strings.Contains(err.Error(), "cpa config "+p+": "+w) {
					t.Errorf("err = %v\nwant it to contain %q, prefixed with the file", err, w)
				}
			}
		})
	}
}

// TestLoadEnvErrorsNameTheVariable: a bad value from the environment is
// reported against that variable, never as a config-file error.
func TestLoadEnvErrorsNameTheVariable(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"not YAML", map[string]string{"maxReplicas": "[1"}, `env maxReplicas="[1": not YAML/JSON`},
		{"wrong type", map[string]string{"minReplicas": "few"}, `env minReplicas="few": minReplicas: got a string, want int32`},
		{"nested wrong type", map[string]string{"apiConfig": `{"enabled": true, "port": "high"}`}, `env apiConfig="{\"enabled\": true, \"port\": \"high\"}": apiConfig.port: got a string, want int`},
		{"unknown nested key", map[string]string{"apiConfig": `{"enabled": true, "prot": 6000}`}, `unknown key "apiConfig.prot"`},
		{"unknown key in a list", map[string]string{"kubernetesMetricSpecs": `[{"type": "Resource", "rsrc": {}}]`}, `: unknown key "kubernetesMetricSpecs[0].rsrc"`},
		{"invalid value", map[string]string{"maxReplicas": "0"}, `env maxReplicas="0": maxReplicas 0: must be >= 1`},
		{"invalid pair", map[string]string{"minReplicas": "5"}, `env minReplicas="5": minReplicas 5 > maxReplicas 3`},
		{"invalid method", map[string]string{"evaluate": `{"type": "grpc"}`}, `env evaluate="{\"type\": \"grpc\"}": evaluate.type "grpc"`},
		{"invalid runMode string", map[string]string{"runMode": "per-node"}, `env runMode="per-node": runMode "per-node"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeConfig(t, minimalYAML+"maxReplicas: 3\n")
			_, err := Load(p, envOf(c.env))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, c.want)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(line, "cpa config") {
					t.Errorf("error line %q blames the config file for an environment value", line)
				}
			}
		})
	}
	t.Run("file problems still name the file", func(t *testing.T) {
		p := writeConfig(t, minimalYAML+"maxReplicas: 0\n")
		_, err := Load(p, envOf(map[string]string{"interval": "0"}))
		for _, want := range []string{"cpa config " + p + ": maxReplicas 0", `env interval="0": interval 0`} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v\nwant it to contain %q", err, want)
			}
		}
	})
	t.Run("no file: environment only", func(t *testing.T) {
		_, err := Load("", envOf(map[string]string{"configPath": "", "maxReplicas": "2"}))
		if err == nil || !strings.Contains(err.Error(), "(no file at /config.yaml; environment only): metric: required") {
			t.Errorf("err = %v, want the missing method blamed on the environment-only config", err)
		}
	})
}

// TestLoadAPIConfigMerge pins how apiConfig merges, as CPA does it: the
// file's keys are laid over the defaults; an apiConfig environment variable
// replaces the whole object, so keys it leaves out are zero (not the file's,
// not the defaults).
func TestLoadAPIConfigMerge(t *testing.T) {
	cases := []struct {
		name, file string
		env        map[string]string
		want       APIConfig
		wantErr    string
	}{
		{"defaults", "", nil, APIConfig{Enabled: true, Port: 5000, Host: "127.0.0.1"}, ""},
		{"file: over the defaults", "apiConfig: {port: 6000}\n", nil, APIConfig{Enabled: true, Port: 6000, Host: "127.0.0.1"}, ""},
		{"file: null means the defaults", "apiConfig: null\n", nil, APIConfig{Enabled: true, Port: 5000, Host: "127.0.0.1"}, ""},
		{"env: whole object", "", map[string]string{"apiConfig": `{"enabled": true, "port": 6000, "host": "127.0.0.1"}`}, APIConfig{Enabled: true, Port: 6000, Host: "127.0.0.1"}, ""},
		{"env: omitted keys are zero, not defaults", "", map[string]string{"apiConfig": `{"port": 6000}`}, APIConfig{Port: 6000}, ""},
		{"env: replaces the file's object", "apiConfig: {port: 6000, host: 127.0.0.1}\n", map[string]string{"apiConfig": "enabled: true\nport: 7000\n"}, APIConfig{Enabled: true, Port: 7000}, ""},
		{"env: disabled", "apiConfig: {port: 6000}\n", map[string]string{"apiConfig": `{"enabled": false}`}, APIConfig{}, ""},
		{"env: enabled without a port is refused", "", map[string]string{"apiConfig": `{"enabled": true}`}, APIConfig{}, `env apiConfig="{\"enabled\": true}": apiConfig.port 0: want 1-65535`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Load(writeConfig(t, minimalYAML+c.file), envOf(c.env))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || *cfg.APIConfig != c.want {
				t.Fatalf("apiConfig = %+v, %v; want %+v", cfg.APIConfig, err, c.want)
			}
		})
	}
}
