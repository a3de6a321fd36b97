package externalscaler

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
)

// historicSuffix marks a consumer group that re-processes old data in
// Azul; such groups count only with includeHistoric "true".
const historicSuffix = "-historic"

// azulWindow is the Azul scaler's sampling span (15 minutes of Burrow
// offsets), the default rate window of Azul ScaledObjects.
const azulWindow = 15 * time.Minute

// PluginsConfig is the --plugins file: where Azul plugins' consumer groups
// live. The Azul scaler found them through its dispatcher's Redis and a
// naming convention; Swell reads them from this file instead, so the
// mapping is explicit and reviewable.
//
//	kafka:
//	  brokers: [kafka:9092]
//	  sasl: scram_sha512          # optional
//	  username: scaler
//	  passwordEnv: KAFKA_PASSWORD # read from the server's environment
//	rateWindow: 15m
//	plugins:
//	  plugin-tika:
//	    groups: [azul.tika.live, azul.tika.expedite]
//	    historicGroups: [azul.tika-historic]
//	    topics: [azul.binary]     # optional
type PluginsConfig struct {
	Kafka      PluginsKafka      `json:"kafka"`
	RateWindow string            `json:"rateWindow,omitempty"`
	Plugins    map[string]Plugin `json:"plugins"`

	conn   KafkaConn
	window time.Duration
}

// PluginsKafka is the cluster every plugin's groups live on.
type PluginsKafka struct {
	Brokers     []string `json:"brokers"`
	SASL        string   `json:"sasl,omitempty"`
	Username    string   `json:"username,omitempty"`
	PasswordEnv string   `json:"passwordEnv,omitempty"`
	TLS         bool     `json:"tls,omitempty"`
}

// Plugin lists one plugin's consumer groups.
type Plugin struct {
	// Groups are always measured (e.g. live and expedite).
	Groups []string `json:"groups"`
	// HistoricGroups are measured only with includeHistoric "true"; a
	// name in Groups ending in "-historic" counts as historic too.
	HistoricGroups []string `json:"historicGroups,omitempty"`
	// Topics limits the lag to these topics (needed to see lag before a
	// group's first commit).
	Topics []string `json:"topics,omitempty"`
}

// groups returns the groups to measure.
func (p Plugin) groups(includeHistoric bool) []string {
	var out []string
	for _, g := range p.Groups {
		if includeHistoric || !strings.HasSuffix(strings.ToLower(g), historicSuffix) {
			out = append(out, g)
		}
	}
	if includeHistoric {
		out = append(out, p.HistoricGroups...)
	}
	return out
}

// LoadPlugins reads and validates a plugins file; getenv resolves
// passwordEnv.
func LoadPlugins(path string, getenv func(string) string) (*PluginsConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("plugins file: %w", err)
	}
	return ParsePlugins(b, getenv)
}

// ParsePlugins decodes a plugins file's content.
func ParsePlugins(b []byte, getenv func(string) string) (*PluginsConfig, error) {
	var c PluginsConfig
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("plugins file: %w", err)
	}
	c.conn = KafkaConn{Brokers: c.Kafka.Brokers, SASL: c.Kafka.SASL, Username: c.Kafka.Username, TLS: c.Kafka.TLS}
	if c.Kafka.PasswordEnv != "" {
		c.conn.Password = brokerconn.Secret(getenv(c.Kafka.PasswordEnv))
	}
	return &c, c.validate()
}

func (c *PluginsConfig) validate() error {
	var errs []error
	if err := c.conn.validate(); err != nil {
		errs = append(errs, fmt.Errorf("plugins file kafka: %w", err))
	}
	c.window = azulWindow
	if c.RateWindow != "" {
		d, err := time.ParseDuration(c.RateWindow)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("plugins file rateWindow: %q is not a positive duration like 15m", c.RateWindow))
		}
		c.window = d
	}
	if len(c.Plugins) == 0 {
		errs = append(errs, errors.New("plugins file: plugins is empty; map each pluginName to its consumer groups"))
	}
	for name, p := range c.Plugins {
		if len(p.Groups)+len(p.HistoricGroups) == 0 {
			errs = append(errs, fmt.Errorf("plugins file: plugins.%s.groups is empty", name))
		}
	}
	return errors.Join(errs...)
}

func (c *PluginsConfig) names() string {
	n := make([]string, 0, len(c.Plugins))
	for k := range c.Plugins {
		n = append(n, k)
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

// isAzul says whether metadata is an Azul scaler ScaledObject. The Azul
// scaler's server reads "entityType" (its README says "entityName"); both
// are accepted.
func isAzul(md map[string]string) bool {
	_, a := md["entityType"]
	_, b := md["entityName"]
	_, c := md["pluginName"]
	return a || b || c
}

// parseAzul decodes the Azul scaler's keys: entityType (or entityName)
// "plugin", pluginName, targetSize, includeHistoric. The metric is named
// "backlog" and reports what the Azul scaler reports (AzulBacklog), so
// HPAs and targetSize keep their meaning.
func parseAzul(p *Parser, f *fields) (*Spec, error) {
	if e := f.str("plugin", "entityType", "entityName"); e != "plugin" {
		f.fail("metadata \"entityType\": %q is not supported; the Azul scaler knows only \"plugin\"", e)
	}
	name := f.required("the plugin deployment's name, a key of the --plugins file", "pluginName")
	target := f.positive(1, "targetSize")
	historic := f.boolean(false, "includeHistoric")
	_, hasActivation := f.md["activationThreshold"]
	activation := f.nonNegative(0, "activationThreshold")
	if p.Plugins == nil {
		return nil, errors.New("metadata \"pluginName\": this server has no plugins file (start it with --plugins) to map plugins to consumer groups")
	}
	plugin, ok := p.Plugins.Plugins[name]
	if name != "" && !ok {
		return nil, fmt.Errorf("metadata \"pluginName\": %q is not in the plugins file; known plugins: %s", name, p.Plugins.names())
	}
	groups := plugin.groups(historic)
	if ok && len(groups) == 0 {
		return nil, fmt.Errorf("metadata \"includeHistoric\": plugin %q has only historic groups; set includeHistoric \"true\"", name)
	}
	t := kafkaTarget{Conn: p.Plugins.conn, Groups: groups, Topics: plugin.Topics, RateWindow: p.Plugins.window, ETACap: p.Defaults.withFallbacks().ETACap}
	return &Spec{
		Source:       "azul-plugin",
		Key:          t.key(),
		Metrics:      []MetricDef{{Name: "backlog", Field: fieldAzul, Target: target}},
		Activation:   activation,
		AlwaysActive: !hasActivation,
		target:       t,
	}, nil
}
