package externalscaler

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/swell-autoscaler/swell/pkg/egress"
	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
)

// Reading is one measurement of a target: named values (lag, eta,
// backlog, …) taken at At. Every ScaledObject sharing the target picks
// the values its metrics name.
type Reading struct {
	Values map[string]float64
	At     time.Time
}

// probe measures one target; made by target.open, owned by one watcher.
type probe interface {
	measure(ctx context.Context, now time.Time) (Reading, error)
	Close() error
}

// target is a decoded, validated description of what to measure. open
// connects, through conns when the client can serve other targets too;
// the watcher calls it again after a failure.
type target interface {
	open(ctx context.Context, conns *sharedConns) (probe, error)
}

// MetricDef is one metric a ScaledObject asks for.
type MetricDef struct {
	// Name is what GetMetricSpec returns and GetMetrics is asked for.
	Name string
	// Field is the Reading value it reports.
	Field string
	// Target is the HPA target per replica (targetSizeFloat).
	Target float64
}

// Spec is one ScaledObject's scalerMetadata, decoded and validated once.
type Spec struct {
	// Source is the source kind (kafka, burrow, redis, …, or azul-plugin).
	Source string
	// Key identifies the measured target; equal keys share one watcher.
	// It holds no credential (only a digest of them).
	Key string
	// Metrics are returned by GetMetricSpec, the first decides activity.
	Metrics []MetricDef
	// Activation: the target is active when the first metric's value is
	// greater than it.
	Activation float64
	// AlwaysActive answers IsActive true whatever the value (the Azul
	// scaler's behaviour, kept unless activationThreshold is set).
	AlwaysActive bool
	// Wait is the wait-time target (targetWaitSeconds; see waitSources): the
	// wait metric reports waittime's replica count (waittarget.go).
	Wait *waitParams

	target target
	// dests are the addresses (host:port) credentials are sent to.
	dests []string
}

// Active says whether a reading makes the ScaledObject active.
func (s *Spec) Active(r Reading) bool {
	if s.AlwaysActive {
		return true
	}
	field := s.Metrics[0].Field
	if field == fieldWaitReplicas {
		// Activity is the backlog's, as without a wait target.
		field = s.Wait.activeField()
	}
	return r.Values[field] > s.Activation
}

// Metric finds the metric named name (as KEDA sends it, without its
// "sN-" prefix).
func (s *Spec) Metric(name string) (MetricDef, bool) {
	for _, m := range s.Metrics {
		if m.Name == name {
			return m, true
		}
	}
	return MetricDef{}, false
}

// MetricNames lists the names, for error messages.
func (s *Spec) MetricNames() string {
	names := make([]string, len(s.Metrics))
	for i, m := range s.Metrics {
		names[i] = m.Name
	}
	return strings.Join(names, ", ")
}

// roundInt is the deprecated int field's value: rounded half away from
// zero, and at least 1 for a positive target (KEDA reads the int field
// only when the float one is 0, and an int target of 0 is invalid).
func roundInt(v float64, atLeastOne bool) int64 {
	r := int64(math.Round(v))
	if atLeastOne && v > 0 && r < 1 {
		return 1
	}
	return r
}

var unsafeMetricChars = regexp.MustCompile(`[^a-z0-9.-]+`)

// metricName makes a metric name from parts: lower case, characters
// outside [a-z0-9.-] become '-', as Kubernetes external metric names in
// URLs and labels stay portable that way.
func metricName(parts ...string) string {
	n := strings.ToLower(strings.Join(parts, "-"))
	n = unsafeMetricChars.ReplaceAllString(n, "-")
	return strings.Trim(n, "-.")
}

// Defaults are server-wide settings ScaledObjects may override.
type Defaults struct {
	// RateWindow is how far back the Kafka consumption rate looks.
	RateWindow time.Duration
	// ETACap is the ETA (seconds) reported when lag waits and nothing is
	// consumed.
	ETACap float64
}

func (d Defaults) withFallbacks() Defaults {
	if d.RateWindow <= 0 {
		d.RateWindow = time.Minute
	}
	if d.ETACap <= 0 {
		d.ETACap = 3600
	}
	return d
}

// Parser decodes scalerMetadata into Specs.
type Parser struct {
	// Plugins maps Azul plugin names to consumer groups (nil: Azul
	// metadata is refused with a hint to pass --plugins).
	Plugins *PluginsConfig
	// Files reads `<key>File` credentials.
	Files SecretFiles
	// Defaults for keys a ScaledObject leaves out.
	Defaults Defaults
	// Egress is the operator's policy for the addresses metadata names;
	// nil allows every address (the `swell external-scaler` command always
	// sets one).
	Egress *egress.Policy
}

// dial is the sources' dial hook: the egress policy's, or nil (dial
// directly) without one.
func (p *Parser) dial() brokerconn.DialFunc {
	if p.Egress == nil {
		return nil
	}
	return brokerconn.DialFunc(p.Egress.Dialer(nil))
}

// sourceParsers decode one source's keys (after "source").
var sourceParsers = map[string]func(p *Parser, f *fields) (*Spec, error){
	"kafka":      parseKafka,
	"burrow":     parseBurrow,
	"redis":      parseRedis,
	"rabbitmq":   parseRabbitMQ,
	"nats":       parseNATS,
	"prometheus": parsePrometheus,
	"http":       parseHTTP,
}

// Parse decodes and validates md. The error lists every problem found,
// each naming its key.
func (p *Parser) Parse(md map[string]string) (*Spec, error) {
	f := newFields(md, p.Files)
	if isAzul(md) {
		s, err := parseAzul(p, f)
		return p.finish(f, s, err)
	}
	kind := f.required("one of "+sourceKinds(), "source")
	if kind == "" {
		return nil, f.done()
	}
	parse, ok := sourceParsers[kind]
	if !ok {
		return nil, fmt.Errorf("metadata \"source\": %q is not a Swell source; use one of %s", kind, sourceKinds())
	}
	if _, _, wait := f.lookup("targetWaitSeconds"); wait && !waitSources[kind] {
		f.fail("metadata \"targetWaitSeconds\": the wait target needs an arrival rate, which the scaler reads from kafka, nats, rabbitmq and redis; source %q has none (a QWorker's targetWaitSeconds works on every broker)", kind)
	}
	s, err := parse(p, f)
	return p.finish(f, s, err)
}

func (p *Parser) finish(f *fields, s *Spec, err error) (*Spec, error) {
	if err != nil {
		f.errs = append(f.errs, err)
	}
	if err := f.done(); err != nil || s == nil {
		return nil, err
	}
	if err := checkBindings(p.Files.Bindings, f.fileCreds, s.dests); err != nil {
		return nil, err
	}
	if d := f.secretDigest(); d != "" {
		s.Key += " creds=" + d
	}
	return s, nil
}

// waitSources are the sources whose readings carry an arrival rate (or
// what makes one) for targetWaitSeconds.
var waitSources = map[string]bool{"kafka": true, "nats": true, "rabbitmq": true, "redis": true}

func sourceKinds() string {
	kinds := make([]string, 0, len(sourceParsers))
	for k := range sourceParsers {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return strings.Join(kinds, ", ")
}

// backlogMetric builds the usual one-metric spec of a queue source:
// targetSize (or its aliases) per replica, activation above
// activationThreshold.
func backlogMetric(f *fields, name string, defTarget float64, targetKeys ...string) (MetricDef, float64) {
	keys := append([]string{"targetSize"}, targetKeys...)
	m := MetricDef{
		Name:   f.str(name, "metricName"),
		Field:  "backlog",
		Target: f.positive(defTarget, keys...),
	}
	m.Name = metricName(m.Name)
	return m, f.nonNegative(0, "activationThreshold", "activationTargetSize")
}
