package cpa

import (
	"errors"
	"fmt"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"

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
		APIConfig:               &APIConfig{Enabled: true, Port: 5000, Host: "127.0.0.1"}, // CPA: 0.0.0.0; Swell binds loopback unless configured
		InitialReadinessDelay:   30,
		CPUInitializationPeriod: 300,
	}
}

// Validate reports every problem at once, each naming its key, the value
// and what would be valid. Each problem is a *KeyError, so Load can say
// whether the key came from the file or from an environment variable.
func (c *Config) Validate() error {
	errs := []error{c.validateTarget(), c.validateNumbers(), c.validateAPI(), c.validateMetricSpecs()}
	if c.RunMode != PerPod && c.RunMode != PerResource {
		errs = append(errs, keyErrorf([]string{"runMode"}, "runMode %q: want %q or %q", c.RunMode, PerPod, PerResource))
	}
	for _, m := range c.methods() {
		if m.required && m.method == nil {
			errs = append(errs, keyErrorf([]string{m.key}, "%s: required (a shell or http method)", m.key))
			continue
		}
		if m.method != nil {
			errs = append(errs, onKeys(m.method.validate(m.key), m.key))
		}
	}
	if c.Behavior != nil {
		b, err := PolicyBehavior(c.Behavior)
		if err == nil {
			err = b.Validate()
		}
		errs = append(errs, onKeys(err, "behavior"))
	}
	return errors.Join(errs...)
}

// KeyError is a config problem and the top-level keys it is about.
type KeyError struct {
	Keys []string
	Err  error
}

func (e *KeyError) Error() string { return e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

func keyErrorf(keys []string, format string, args ...any) error {
	return &KeyError{Keys: keys, Err: fmt.Errorf(format, args...)}
}

// onKeys tags err (nil stays nil) with keys.
func onKeys(err error, keys ...string) error {
	if err == nil {
		return nil
	}
	return &KeyError{Keys: keys, Err: err}
}

func (c *Config) validateTarget() error {
	r := c.ScaleTargetRef
	if r == nil || r.Kind == "" || r.Name == "" || r.APIVersion == "" {
		return keyErrorf([]string{"scaleTargetRef"}, "scaleTargetRef %+v: apiVersion, kind and name are required", r)
	}
	if c.Namespace == "" {
		return keyErrorf([]string{"namespace"}, "namespace: must not be empty")
	}
	return nil
}

func (c *Config) validateNumbers() error {
	var errs []error
	check := func(ok bool, keys []string, format string, args ...any) {
		if !ok {
			errs = append(errs, keyErrorf(keys, format, args...))
		}
	}
	k := func(keys ...string) []string { return keys }
	check(c.Interval > 0, k("interval"), "interval %d: must be > 0 (milliseconds)", c.Interval)
	check(c.MinReplicas >= 0, k("minReplicas"), "minReplicas %d: must be >= 0 (0 allows scale to zero)", c.MinReplicas)
	check(c.MaxReplicas >= 1, k("maxReplicas"), "maxReplicas %d: must be >= 1", c.MaxReplicas)
	check(c.MinReplicas <= c.MaxReplicas, k("minReplicas", "maxReplicas"), "minReplicas %d > maxReplicas %d: min must not exceed max", c.MinReplicas, c.MaxReplicas)
	check(c.StartTime > 0, k("startTime"), "startTime %d: must be > 0 (milliseconds to align ticks to)", c.StartTime)
	check(c.DownscaleStabilization >= 0, k("downscaleStabilization"), "downscaleStabilization %d: must be >= 0 (seconds)", c.DownscaleStabilization)
	check(c.InitialReadinessDelay >= 0, k("initialReadinessDelay"), "initialReadinessDelay %d: must be >= 0 (seconds)", c.InitialReadinessDelay)
	check(c.CPUInitializationPeriod >= 0, k("cpuInitializationPeriod"), "cpuInitializationPeriod %d: must be >= 0 (seconds)", c.CPUInitializationPeriod)
	return errors.Join(errs...)
}

func (c *Config) validateAPI() error {
	a := c.APIConfig
	if a == nil || !a.Enabled {
		return nil
	}
	if a.Port < 1 || a.Port > 65535 {
		return keyErrorf([]string{"apiConfig"}, "apiConfig.port %d: want 1-65535", a.Port)
	}
	if a.UseHTTPS && (a.CertFile == "" || a.KeyFile == "") {
		return keyErrorf([]string{"apiConfig"}, "apiConfig.useHTTPS: needs apiConfig.certFile and apiConfig.keyFile")
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
			errs = append(errs, keyErrorf([]string{"kubernetesMetricSpecs"}, "kubernetesMetricSpecs[%d].type %q: want Resource, Pods, Object or External with the matching block", i, s.Type))
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
