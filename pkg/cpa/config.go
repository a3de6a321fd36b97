package cpa

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"sigs.k8s.io/yaml"

	"github.com/swell-autoscaler/swell/pkg/policy"
	"github.com/swell-autoscaler/swell/pkg/policy/hpav2"
)

// Run modes, as CPA names them.
const (
	// PerPod runs metric gathering once per pod of the target, with the Pod.
	PerPod = "per-pod"
	// PerResource runs metric gathering once, with the target object.
	PerResource = "per-resource"
)

// Run types tell user logic why it is called, as CPA names them.
const (
	RunTypeScaler    = "scaler"
	RunTypeAPI       = "api"
	RunTypeAPIDryRun = "api_dry_run"
)

// Method types.
const (
	MethodShell = "shell"
	MethodHTTP  = "http"
)

// HTTP parameter modes: where the JSON input goes.
const (
	ParameterQuery = "query"
	ParameterBody  = "body"
)

// DefaultConfigPath is where CPA images keep their config; the env var
// `configPath` overrides it, as in CPA.
const DefaultConfigPath = "/config.yaml"

// ConfigPathEnv names the environment variable holding the config path.
const ConfigPathEnv = "configPath"

// DefaultMethodTimeout applies when a method's timeout is 0 or unset. CPA
// passes 0 straight to its timer, so such a method fails at once; 10 s is
// long enough for a script that queries a service and short enough that a
// hung script is noticed within one default 15 s interval.
const DefaultMethodTimeout = 10 * time.Second

// Config is CPA's configuration with its keys, JSON names and defaults, plus
// Swell's optional additions (marked). Load fills and validates it once.
type Config struct {
	ScaleTargetRef           *autoscalingv2.CrossVersionObjectReference `json:"scaleTargetRef"`
	PreMetric                *Method                                    `json:"preMetric"`
	PostMetric               *Method                                    `json:"postMetric"`
	PreEvaluate              *Method                                    `json:"preEvaluate"`
	PostEvaluate             *Method                                    `json:"postEvaluate"`
	PreScale                 *Method                                    `json:"preScale"`
	PostScale                *Method                                    `json:"postScale"`
	Evaluate                 *Method                                    `json:"evaluate"`
	Metric                   *Method                                    `json:"metric"`
	Interval                 int                                        `json:"interval"`
	Namespace                string                                     `json:"namespace"`
	MinReplicas              int32                                      `json:"minReplicas"`
	MaxReplicas              int32                                      `json:"maxReplicas"`
	RunMode                  string                                     `json:"runMode"`
	StartTime                int64                                      `json:"startTime"`
	LogVerbosity             int32                                      `json:"logVerbosity"`
	DownscaleStabilization   int                                        `json:"downscaleStabilization"`
	APIConfig                *APIConfig                                 `json:"apiConfig"`
	KubernetesMetricSpecs    []autoscalingv2.MetricSpec                 `json:"kubernetesMetricSpecs"`
	RequireKubernetesMetrics bool                                       `json:"requireKubernetesMetrics"`
	InitialReadinessDelay    int64                                      `json:"initialReadinessDelay"`
	CPUInitializationPeriod  int64                                      `json:"cpuInitializationPeriod"`

	// Behavior (Swell) is HPA v2 behaviour applied after
	// downscaleStabilization; nil leaves CPA's behaviour unchanged.
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
}

// APIConfig configures CPA's REST API server.
type APIConfig struct {
	Enabled  bool   `json:"enabled"`
	UseHTTPS bool   `json:"useHTTPS"`
	Port     int    `json:"port"`
	Host     string `json:"host"`
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
}

// Addr is host:port for net.Listen.
func (a APIConfig) Addr() string { return fmt.Sprintf("%s:%d", a.Host, a.Port) }

// Method says how user logic is called: a command or an HTTP request.
type Method struct {
	Type string `json:"type"`
	// Timeout is in milliseconds; 0 means DefaultMethodTimeout.
	Timeout int    `json:"timeout"`
	Shell   *Shell `json:"shell"`
	HTTP    *HTTP  `json:"http"`
}

// TimeoutDuration is the effective timeout.
func (m *Method) TimeoutDuration() time.Duration {
	if m.Timeout <= 0 {
		return DefaultMethodTimeout
	}
	return time.Duration(m.Timeout) * time.Millisecond
}

// Shell is a command: entrypoint and arguments, run without a shell.
type Shell struct {
	Entrypoint string   `json:"entrypoint"`
	Command    []string `json:"command"`
	// LogStderr true logs a successful command's stderr at info level, as
	// CPA does; otherwise it is logged at debug level. A failed command's
	// error always carries the end of its stderr.
	LogStderr *bool `json:"logStderr,omitempty"`
}

// HTTP is a request; the JSON input goes in the query (`value=`) or body.
type HTTP struct {
	Method        string            `json:"method"`
	URL           string            `json:"url"`
	Headers       map[string]string `json:"headers,omitempty"`
	SuccessCodes  []int             `json:"successCodes"`
	ParameterMode string            `json:"parameterMode"`
	// CACert, ClientCert and ClientKey are PEM file paths for TLS: the CA
	// to trust and an optional client certificate.
	CACert     string `json:"caCert,omitempty"`
	ClientCert string `json:"clientCert,omitempty"`
	ClientKey  string `json:"clientKey,omitempty"`
}

// NewConfig returns CPA's defaults.
func NewConfig() *Config {
	return &Config{
		Interval:                15000,
		Namespace:               "default",
		MinReplicas:             1,
		MaxReplicas:             10,
		RunMode:                 PerPod,
		StartTime:               1,
		APIConfig:               &APIConfig{Enabled: true, Port: 5000, Host: "0.0.0.0"},
		InitialReadinessDelay:   30,
		CPUInitializationPeriod: 300,
	}
}

// Load reads the config file, lets environment variables named exactly like
// a key override it (values parsed as YAML or JSON, as CPA does), applies
// CPA's defaults and validates. path empty means $configPath, else
// /config.yaml; a missing default file just means "environment only".
func Load(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	explicit := path != ""
	if !explicit {
		path = DefaultConfigPath
		if p, ok := lookupEnv(ConfigPathEnv); ok && p != "" {
			path, explicit = p, true
		}
	}
	doc, err := readDoc(path, explicit)
	if err != nil {
		return nil, err
	}
	if err := applyEnv(doc, lookupEnv); err != nil {
		return nil, err
	}
	cfg, err := decode(doc)
	if err != nil {
		return nil, fmt.Errorf("cpa config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cpa config %s: %w", path, err)
	}
	return cfg, nil
}

// readDoc decodes the file into key → value.
func readDoc(path string, mustExist bool) (map[string]any, error) {
	doc := map[string]any{}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !mustExist {
		return doc, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read cpa config: %w", err)
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("cpa config %s: not a YAML/JSON map of keys: %w", path, err)
	}
	if doc == nil {
		doc = map[string]any{}
	}
	return doc, nil
}

// configKeys maps each top-level JSON key to its field type.
func configKeys() map[string]reflect.Type {
	keys := map[string]reflect.Type{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		keys[name] = t.Field(i).Type
	}
	return keys
}

// applyEnv overrides doc with environment variables named like keys. A
// string key takes the raw value (so namespace "123" stays a string); any
// other key is parsed as YAML/JSON.
func applyEnv(doc map[string]any, lookupEnv func(string) (string, bool)) error {
	var errs []error
	for key, typ := range configKeys() {
		raw, ok := lookupEnv(key)
		if !ok {
			continue
		}
		if typ.Kind() == reflect.String {
			doc[key] = raw
			continue
		}
		var v any
		if err := yaml.Unmarshal([]byte(raw), &v); err != nil {
			errs = append(errs, fmt.Errorf("env %s=%q: not YAML/JSON: %w", key, raw, err))
			continue
		}
		doc[key] = v
	}
	return errors.Join(errs...)
}

// decode turns the merged document into a Config on top of the defaults,
// refusing unknown keys: a typo would otherwise silently keep a default.
func decode(doc map[string]any) (*Config, error) {
	keys := configKeys()
	var errs []error
	for k := range doc {
		if _, ok := keys[k]; !ok {
			errs = append(errs, fmt.Errorf("unknown key %q", k))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("re-encode config: %w", err)
	}
	cfg := NewConfig()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if cfg.APIConfig == nil {
		cfg.APIConfig = NewConfig().APIConfig
	}
	return cfg, nil
}

// Validate reports every problem at once, each naming its key, the value
// and what would be valid.
func (c *Config) Validate() error {
	errs := []error{c.validateTarget(), c.validateNumbers(), c.validateAPI(), c.validateMetricSpecs()}
	if c.RunMode != PerPod && c.RunMode != PerResource {
		errs = append(errs, fmt.Errorf("runMode %q: want %q or %q", c.RunMode, PerPod, PerResource))
	}
	for _, m := range c.methods() {
		if m.required && m.method == nil {
			errs = append(errs, fmt.Errorf("%s: required (a shell or http method)", m.key))
			continue
		}
		if m.method != nil {
			errs = append(errs, m.method.validate(m.key))
		}
	}
	if c.Behavior != nil {
		b, err := PolicyBehavior(c.Behavior)
		errs = append(errs, err)
		if err == nil {
			errs = append(errs, b.Validate())
		}
	}
	return errors.Join(errs...)
}

func (c *Config) validateTarget() error {
	r := c.ScaleTargetRef
	if r == nil || r.Kind == "" || r.Name == "" || r.APIVersion == "" {
		return fmt.Errorf("scaleTargetRef %+v: apiVersion, kind and name are required", r)
	}
	if c.Namespace == "" {
		return errors.New("namespace: must not be empty")
	}
	return nil
}

func (c *Config) validateNumbers() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.Interval > 0, "interval %d: must be > 0 (milliseconds)", c.Interval)
	check(c.MinReplicas >= 0, "minReplicas %d: must be >= 0 (0 allows scale to zero)", c.MinReplicas)
	check(c.MaxReplicas >= 1, "maxReplicas %d: must be >= 1", c.MaxReplicas)
	check(c.MinReplicas <= c.MaxReplicas, "minReplicas %d > maxReplicas %d: min must not exceed max", c.MinReplicas, c.MaxReplicas)
	check(c.StartTime > 0, "startTime %d: must be > 0 (milliseconds to align ticks to)", c.StartTime)
	check(c.DownscaleStabilization >= 0, "downscaleStabilization %d: must be >= 0 (seconds)", c.DownscaleStabilization)
	check(c.InitialReadinessDelay >= 0, "initialReadinessDelay %d: must be >= 0 (seconds)", c.InitialReadinessDelay)
	check(c.CPUInitializationPeriod >= 0, "cpuInitializationPeriod %d: must be >= 0 (seconds)", c.CPUInitializationPeriod)
	return errors.Join(errs...)
}

func (c *Config) validateAPI() error {
	a := c.APIConfig
	if a == nil || !a.Enabled {
		return nil
	}
	if a.Port < 1 || a.Port > 65535 {
		return fmt.Errorf("apiConfig.port %d: want 1-65535", a.Port)
	}
	if a.UseHTTPS && (a.CertFile == "" || a.KeyFile == "") {
		return errors.New("apiConfig.useHTTPS: needs apiConfig.certFile and apiConfig.keyFile")
	}
	return nil
}

func (c *Config) validateMetricSpecs() error {
	var errs []error
	for i, s := range c.KubernetesMetricSpecs {
		ok := false
		switch s.Type {
		case autoscalingv2.ResourceMetricSourceType:
			ok = s.Resource != nil
		case autoscalingv2.PodsMetricSourceType:
			ok = s.Pods != nil
		case autoscalingv2.ObjectMetricSourceType:
			ok = s.Object != nil
		case autoscalingv2.ExternalMetricSourceType:
			ok = s.External != nil
		}
		if !ok {
			errs = append(errs, fmt.Errorf("kubernetesMetricSpecs[%d].type %q: want Resource, Pods, Object or External with the matching block", i, s.Type))
		}
	}
	return errors.Join(errs...)
}

type namedMethod struct {
	key      string
	method   *Method
	required bool
}

func (c *Config) methods() []namedMethod {
	return []namedMethod{
		{"metric", c.Metric, true}, {"evaluate", c.Evaluate, true},
		{"preMetric", c.PreMetric, false}, {"postMetric", c.PostMetric, false},
		{"preEvaluate", c.PreEvaluate, false}, {"postEvaluate", c.PostEvaluate, false},
		{"preScale", c.PreScale, false}, {"postScale", c.PostScale, false},
	}
}

func (m *Method) validate(key string) error {
	if m.Timeout < 0 {
		return fmt.Errorf("%s.timeout %d: must be >= 0 (milliseconds; 0 = %s)", key, m.Timeout, DefaultMethodTimeout)
	}
	switch m.Type {
	case MethodShell:
		if m.Shell == nil || m.Shell.Entrypoint == "" {
			return fmt.Errorf("%s.shell.entrypoint: required for type shell", key)
		}
	case MethodHTTP:
		return m.HTTP.validate(key)
	default:
		return fmt.Errorf("%s.type %q: want %q or %q", key, m.Type, MethodShell, MethodHTTP)
	}
	return nil
}

func (h *HTTP) validate(key string) error {
	if h == nil || h.URL == "" || h.Method == "" {
		return fmt.Errorf("%s.http: method and url are required for type http", key)
	}
	if h.ParameterMode != ParameterQuery && h.ParameterMode != ParameterBody {
		return fmt.Errorf("%s.http.parameterMode %q: want %q or %q", key, h.ParameterMode, ParameterQuery, ParameterBody)
	}
	if len(h.SuccessCodes) == 0 {
		return fmt.Errorf("%s.http.successCodes: list at least one status code (e.g. [200])", key)
	}
	if (h.ClientCert == "") != (h.ClientKey == "") {
		return fmt.Errorf("%s.http: clientCert and clientKey go together", key)
	}
	return nil
}

// PolicyBehavior converts an HPA v2 behavior into the policy core's form.
func PolicyBehavior(b *autoscalingv2.HorizontalPodAutoscalerBehavior) (policy.Behavior, error) {
	return hpav2.Behavior(b)
}
