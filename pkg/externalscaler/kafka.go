package externalscaler

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
	"github.com/swell-autoscaler/swell/pkg/source/kafka"
)

// Reading fields of a Kafka target.
const (
	fieldLag  = "lag"
	fieldETA  = "eta"
	fieldAzul = "backlog"
)

// KafkaConn says how to reach a Kafka cluster: from metadata keys, or
// from the plugins file for Azul ScaledObjects.
type KafkaConn struct {
	Brokers []string `json:"brokers"`
	// SASL is "", plaintext, scram_sha256 or scram_sha512 (KEDA's names).
	SASL     string            `json:"sasl,omitempty"`
	Username string            `json:"username,omitempty"`
	Password brokerconn.Secret `json:"-"`
	// TLS turns on TLS with the system roots (or CA).
	TLS bool `json:"tls,omitempty"`
	// CAPEM is the CA bundle for TLS.
	CAPEM []byte `json:"-"`
	// dial, when set, opens connections (the egress policy's dialer).
	dial brokerconn.DialFunc
}

func (c KafkaConn) validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no bootstrap servers; set \"bootstrapServers\" to host:port[,host:port]"))
	}
	for _, b := range c.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("bootstrap server %q is not host:port", b))
		}
	}
	switch c.SASL {
	case "", "none":
	case "plaintext", "scram_sha256", "scram_sha512":
		if c.Username == "" || c.Password == "" {
			errs = append(errs, fmt.Errorf("sasl %s needs \"username\" and \"passwordFromEnv\" or \"passwordFile\"", c.SASL))
		}
	default:
		errs = append(errs, fmt.Errorf("sasl %q is not one of none, plaintext, scram_sha256, scram_sha512", c.SASL))
	}
	return errors.Join(errs...)
}

func (c KafkaConn) options() ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.DialTimeout(5 * time.Second),
		kgo.ClientID("swell-external-scaler"),
		// A poll fails fast on a dead cluster; the next poll retries.
		kgo.RequestRetries(1),
		kgo.RetryTimeout(5 * time.Second),
	}
	user, pw := c.Username, c.Password.Reveal()
	switch c.SASL {
	case "plaintext":
		opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: pw}.AsMechanism()))
	case "scram_sha256":
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pw}.AsSha256Mechanism()))
	case "scram_sha512":
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pw}.AsSha512Mechanism()))
	}
	if c.TLS {
		cfg, err := brokerconn.TLS{Enabled: true, CAPEM: c.CAPEM}.Config("")
		if err != nil {
			return nil, fmt.Errorf("kafka tls: %w", err)
		}
		if c.dial != nil {
			// franz-go takes a Dialer or a TLS config, not both.
			return append(opts, kgo.Dialer(brokerconn.WithTLS(c.dial, cfg))), nil
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if c.dial != nil {
		opts = append(opts, kgo.Dialer(c.dial))
	}
	return opts, nil
}

// kafkaTarget is a set of consumer groups whose lag is summed.
type kafkaTarget struct {
	Conn   KafkaConn `json:"conn"`
	Groups []string  `json:"groups"`
	// Topics limits the lag to these topics; empty means every topic the
	// groups committed offsets on.
	Topics     []string      `json:"topics,omitempty"`
	RateWindow time.Duration `json:"rateWindow"`
	ETACap     float64       `json:"etaCap"`
	// OldestAge reads the oldest unconsumed record's timestamp each poll
	// (one Fetch per partition leader), for a wait target's correction.
	OldestAge bool `json:"oldestAge,omitempty"`
}

func (t kafkaTarget) key() string {
	g := append([]string(nil), t.Groups...)
	sort.Strings(g)
	tp := append([]string(nil), t.Topics...)
	sort.Strings(tp)
	b := append([]string(nil), t.Conn.Brokers...)
	sort.Strings(b)
	k := fmt.Sprintf("kafka brokers=%s sasl=%s user=%s tls=%t groups=%s topics=%s window=%s cap=%g",
		strings.Join(b, ","), t.Conn.SASL, t.Conn.Username, t.Conn.TLS,
		strings.Join(g, ","), strings.Join(tp, ","), t.RateWindow, t.ETACap)
	if t.OldestAge {
		k += " age"
	}
	return k
}

func (t kafkaTarget) open(ctx context.Context, _ *sharedConns) (probe, error) {
	opts, err := t.Conn.options()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("kafka %s: %w", strings.Join(t.Conn.Brokers, ","), err)
	}
	return &kafkaProbe{t: t, cl: cl, adm: kadm.NewClient(cl), win: rateWindow{window: t.RateWindow}}, nil
}

// kafkaProbe measures lag with kadm and keeps the rate window.
type kafkaProbe struct {
	t   kafkaTarget
	cl  *kgo.Client
	adm *kadm.Client
	win rateWindow
}

func (p *kafkaProbe) Close() error {
	p.cl.Close()
	return nil
}

func (p *kafkaProbe) measure(ctx context.Context, now time.Time) (Reading, error) {
	parts, heads, err := p.offsets(ctx)
	if err != nil {
		return Reading{}, err
	}
	tot := SumLag(parts)
	p.win.add(progressPoint{at: now, position: tot.Position, end: tot.End})
	consumed, produced, span, _ := p.win.progress()
	rate := p.win.rate()
	r := Reading{At: now, Values: map[string]float64{
		fieldLag:     float64(tot.Lag),
		fieldETA:     ETASeconds(tot.Lag, rate, p.t.ETACap),
		fieldAzul:    AzulBacklog(tot.Lag, produced, consumed, span),
		"rate":       rate,
		"partitions": float64(tot.Partitions),
	}}
	if span > 0 {
		// Records produced per second over the window: the arrival rate
		// of the wait target.
		r.Values[fieldArrivalRate] = float64(produced) / span.Seconds()
	}
	if age := p.oldestAge(ctx, heads); age > 0 {
		r.Values[fieldOldestAge] = age.Seconds()
	}
	return r, nil
}

// oldestAge is the age of the oldest record no group has consumed yet,
// read as the QWorker's Kafka source reads it (kafka.OldestRecord, against
// the wall clock: record timestamps are wall-clock times); 0 when the
// target does not ask for it, nothing waits, or the broker did not say.
func (p *kafkaProbe) oldestAge(ctx context.Context, heads map[string]map[int32]int64) time.Duration {
	if !p.t.OldestAge {
		return 0
	}
	var oldest time.Time
	for topic, from := range heads {
		ts := kafka.OldestRecord(ctx, p.cl, topic, from)
		if !ts.IsZero() && (oldest.IsZero() || ts.Before(oldest)) {
			oldest = ts
		}
	}
	return source.AgeAt(time.Now(), oldest)
}

// committed fetches every group's commits concurrently.
func (p *kafkaProbe) committed(ctx context.Context) ([]kadm.OffsetResponses, error) {
	out := make([]kadm.OffsetResponses, len(p.t.Groups))
	errs := make([]error, len(p.t.Groups))
	var wg sync.WaitGroup
	for i, g := range p.t.Groups {
		wg.Go(func() {
			r, err := p.adm.FetchOffsets(ctx, g)
			if errors.Is(err, kerr.GroupIDNotFound) {
				r, err = nil, nil // never committed: counts from the log start
			}
			if err == nil {
				err = r.Error()
			}
			out[i], errs[i] = r, wrapGroup(g, err)
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func wrapGroup(g string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("kafka group %q: fetch committed offsets: %w", g, err)
}

// topics is the configured topics, or every topic a group committed on.
func (p *kafkaProbe) topics(committed []kadm.OffsetResponses) ([]string, error) {
	if len(p.t.Topics) > 0 {
		return p.t.Topics, nil
	}
	set := map[string]bool{}
	for _, c := range committed {
		for t := range c {
			set[t] = true
		}
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("kafka groups %s have committed no offsets yet; set \"topic\" to measure lag before the first commit", strings.Join(p.t.Groups, ","))
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Strings(out)
	return out, nil
}

// offsets reads start, end and committed offsets and returns one
// PartitionOffsets per (group, partition), and the heads: by topic and
// partition, the first offset some group has not consumed, where one
// waits.
func (p *kafkaProbe) offsets(ctx context.Context) ([]PartitionOffsets, map[string]map[int32]int64, error) {
	committed, err := p.committed(ctx)
	if err != nil {
		return nil, nil, err
	}
	topics, err := p.topics(committed)
	if err != nil {
		return nil, nil, err
	}
	var (
		starts, ends kadm.ListedOffsets
		e1, e2       error
		wg           sync.WaitGroup
	)
	wg.Go(func() { starts, e1 = p.adm.ListStartOffsets(ctx, topics...) })
	wg.Go(func() { ends, e2 = p.adm.ListEndOffsets(ctx, topics...) })
	wg.Wait()
	if err := errors.Join(e1, e2); err != nil {
		return nil, nil, fmt.Errorf("kafka list offsets of %s: %w", strings.Join(topics, ","), err)
	}
	if err := errors.Join(starts.Error(), ends.Error()); err != nil {
		return nil, nil, fmt.Errorf("kafka list offsets of %s: %w", strings.Join(topics, ","), err)
	}
	return joinOffsets(topics, starts, ends, committed)
}

func joinOffsets(topics []string, starts, ends kadm.ListedOffsets, committed []kadm.OffsetResponses) ([]PartitionOffsets, map[string]map[int32]int64, error) {
	var parts []PartitionOffsets
	heads := map[string]map[int32]int64{}
	for _, topic := range topics {
		if len(ends[topic]) == 0 {
			return nil, nil, fmt.Errorf("kafka topic %q has no partitions (does it exist?)", topic)
		}
		for pn, end := range ends[topic] {
			start := starts[topic][pn].Offset
			for _, c := range committed {
				at := int64(-1)
				if r, ok := c.Lookup(topic, pn); ok {
					at = r.At
				}
				po := PartitionOffsets{Start: start, End: end.Offset, Committed: at}
				parts = append(parts, po)
				addHead(heads, topic, pn, po)
			}
		}
	}
	return parts, heads, nil
}

// addHead notes po's first unconsumed offset when records wait there,
// keeping the lowest (oldest) over the groups.
func addHead(heads map[string]map[int32]int64, topic string, pn int32, po PartitionOffsets) {
	pos := max(po.Committed, po.Start)
	if po.End <= pos {
		return
	}
	if heads[topic] == nil {
		heads[topic] = map[int32]int64{}
	}
	if at, ok := heads[topic][pn]; !ok || pos < at {
		heads[topic][pn] = pos
	}
}

// kafkaConn decodes the connection keys shared by the kafka source.
func kafkaConn(f *fields) KafkaConn {
	c := KafkaConn{
		Brokers:  f.list("bootstrapServers", "brokers"),
		SASL:     f.str("", "sasl"),
		Username: f.str("", "username"),
		Password: f.secret("password"),
		TLS:      f.str("disable", "tls") == "enable",
	}
	if ca := f.secret("ca"); ca != "" {
		c.CAPEM = []byte(ca.Reveal())
	}
	if v := f.str("disable", "tls"); v != "enable" && v != "disable" {
		f.fail("metadata \"tls\": %q is not enable or disable", v)
	}
	if err := c.validate(); err != nil {
		f.fail("metadata (kafka connection): %v", err)
	}
	return c
}

// parseKafka decodes source=kafka: the lag of one or more consumer groups
// (summed), reported as lag and/or ETA.
func parseKafka(p *Parser, f *fields) (*Spec, error) {
	d := p.Defaults.withFallbacks()
	t := kafkaTarget{
		Conn:       kafkaConn(f),
		Groups:     f.list("consumerGroup", "consumerGroups"),
		Topics:     f.list("topic", "topics"),
		RateWindow: f.duration(d.RateWindow, "rateWindow"),
		ETACap:     f.positive(d.ETACap, "etaCapSeconds"),
	}
	if len(t.Groups) == 0 {
		f.fail("metadata \"consumerGroup\" is required: the consumer group whose lag is measured (several: comma-separated, summed)")
	}
	t.Conn.dial = p.dial()
	wait := parseWait(f)
	// The oldest record's age corrects the wait metric (see
	// waittarget.go); other metrics do not pay for reading it.
	t.OldestAge = wait != nil
	group := strings.Join(t.Groups, "+")
	spec := &Spec{Source: "kafka", Key: t.key(), target: t, dests: t.Conn.Brokers, Wait: wait}
	kinds := f.list("metric")
	if len(kinds) == 0 {
		kinds = []string{fieldLag}
	}
	if spec.Wait != nil && len(f.list("metric")) == 0 {
		kinds = nil // the wait metric alone, unless others are asked for
	}
	lagTarget := f.positive(10, "targetSize", "lagThreshold")
	etaTarget := f.positive(60, "targetETASeconds")
	for _, k := range kinds {
		switch k {
		case fieldLag:
			spec.Metrics = append(spec.Metrics, MetricDef{Name: metricName("kafka-lag", group), Field: fieldLag, Target: lagTarget})
		case fieldETA:
			spec.Metrics = append(spec.Metrics, MetricDef{Name: metricName("kafka-eta", group), Field: fieldETA, Target: etaTarget})
		default:
			f.fail("metadata \"metric\": %q is not lag or eta (use \"lag\", \"eta\" or \"lag,eta\")", k)
		}
	}
	if spec.Wait != nil {
		spec.Metrics = append([]MetricDef{{Name: metricName("kafka-wait", group), Field: fieldWaitReplicas, Target: 1}}, spec.Metrics...)
	}
	spec.Activation = f.nonNegative(0, "activationThreshold", "activationLagThreshold")
	return spec, nil
}
