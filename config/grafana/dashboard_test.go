// Package grafana_test checks config/grafana/swell-dashboard.json against
// the metrics Swell's binaries actually register: every metric a panel or
// variable queries, every label it filters or groups on, and every label a
// legend prints must exist.
package grafana_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/swell-autoscaler/swell/internal/controller/qworker"
	"github.com/swell-autoscaler/swell/pkg/cpa"
	"github.com/swell-autoscaler/swell/pkg/externalscaler"
	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// series is one metric name a scrape can return, with its label names.
type series struct {
	component string
	labels    map[string]bool
}

// catalog maps every series name to where it comes from.
type catalog map[string]series

// recorder is a prometheus.Registerer that keeps what the components
// register: each collector's descriptions, and whether it is a histogram
// or summary (which add _bucket/_sum/_count series).
type recorder struct {
	t         *testing.T
	component string
	cat       catalog
}

var (
	descName   = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)
	descConst  = regexp.MustCompile(`constLabels: \{([^}]*)\}`)
	descVar    = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
	constLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)=`)
)

func (r *recorder) Register(c prometheus.Collector) error {
	suffixes := []string{""}
	switch kind(c) {
	case "histogram":
		suffixes = []string{"_bucket", "_sum", "_count"}
	case "summary":
		suffixes = []string{"", "_sum", "_count"}
	}
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		s := d.String()
		m := descName.FindStringSubmatch(s)
		if m == nil {
			r.t.Fatalf("%s: cannot read the name of %s", r.component, s)
		}
		labels := map[string]bool{}
		if cm := descConst.FindStringSubmatch(s); cm != nil {
			for _, l := range constLabel.FindAllStringSubmatch(cm[1], -1) {
				labels[l[1]] = true
			}
		}
		if vm := descVar.FindStringSubmatch(s); vm != nil && vm[1] != "" {
			for _, l := range strings.Split(vm[1], ",") {
				labels[strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")")] = true
			}
		}
		for _, suf := range suffixes {
			l := labels
			if suf == "_bucket" {
				l = withLabel(labels, "le")
			} else if suf == "" && len(suffixes) == 3 {
				l = withLabel(labels, "quantile")
			}
			r.cat[m[1]+suf] = series{component: r.component, labels: l}
		}
	}
	return nil
}

// kind tells histograms and summaries from other collectors: vectors by
// type, single metrics (whose Go interfaces look alike) by what they write.
func kind(c prometheus.Collector) string {
	switch c.(type) {
	case *prometheus.HistogramVec:
		return "histogram"
	case *prometheus.SummaryVec:
		return "summary"
	}
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	k := ""
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			continue
		}
		switch {
		case pb.Histogram != nil:
			k = "histogram"
		case pb.Summary != nil:
			k = "summary"
		}
	}
	return k
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *recorder) Unregister(prometheus.Collector) bool { return true }

func withLabel(m map[string]bool, l string) map[string]bool {
	out := map[string]bool{l: true}
	for k := range m {
		out[k] = true
	}
	return out
}

// gatherInto adds the series a real registry returns now (non-vector
// collectors such as the Go and process collectors and controller-runtime's
// own series).
func gatherInto(t *testing.T, cat catalog, component string, g prometheus.Gatherer) {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		labels := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		names := []string{f.GetName()}
		if f.GetType().String() == "HISTOGRAM" {
			names = []string{f.GetName() + "_bucket", f.GetName() + "_sum", f.GetName() + "_count"}
		}
		for _, n := range names {
			if _, ok := cat[n]; !ok {
				cat[n] = series{component: component, labels: labels}
			}
		}
	}
}

// swellCatalog builds the collectors each Swell binary registers, the same
// way the binaries build them, and records their series.
func swellCatalog(t *testing.T) catalog {
	t.Helper()
	cat := catalog{}
	rec := func(component string) *recorder { return &recorder{t: t, component: component, cat: cat} }
	runtimeCollectors := func(component string) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		gatherInto(t, cat, component, reg)
	}

	// swell controller: the QWorker series on controller-runtime's registry,
	// next to controller-runtime's own.
	if _, err := qworker.NewMetrics(rec("controller")); err != nil {
		t.Fatal(err)
	}
	gatherInto(t, cat, "controller", crmetrics.Registry)

	// swell cpa: one runner's series (labelled with its target).
	cfg := cpa.NewConfig()
	cfg.Namespace = "default"
	cfg.ScaleTargetRef = &autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}
	// Nothing is contacted until the runner runs.
	unreachable := &rest.Config{Host: "https://127.0.0.1:1"}
	_, stop, err := cpa.NewForCluster(unreachable, cfg, cpa.ClusterOptions{Registerer: rec("cpa")})
	if err != nil {
		t.Fatal(err)
	}
	stop()
	runtimeCollectors("cpa")

	// swell external-scaler.
	externalscaler.NewMetrics(rec("external-scaler"))
	runtimeCollectors("external-scaler")

	// swell nodepool, with the kwok provider.
	npCfg, err := nodepool.FromKeys(map[string]string{
		nodepool.KeyCloudProvider: nodepool.ProviderKwok, nodepool.KeyNodeSelector: "pool=a",
		nodepool.KeyMinNodes: "0", nodepool.KeyMaxNodes: "3",
		nodepool.KeyPodLabelName: "app", nodepool.KeyPodLabelValue: "server", nodepool.KeyServerCPURequest: "500",
	})
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(unreachable)
	if err != nil {
		t.Fatal(err)
	}
	prov, err := nodepool.NewProvider(context.Background(), npCfg, client)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nodepool.New(nodepool.Options{Config: npCfg, Client: client, Provider: prov, Registerer: rec("nodepool")}); err != nil {
		t.Fatal(err)
	}
	runtimeCollectors("nodepool")
	return cat
}

// target is one query of the dashboard.
type target struct {
	where, expr, legend string
	// label is the label a label_values variable lists.
	label string
}

// dashboardTargets collects every panel target (rows' nested panels
// included) and every Prometheus query variable.
func dashboardTargets(t *testing.T, path string) []target {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Panels  []json.RawMessage
		Targets []struct {
			Expr         string `json:"expr"`
			LegendFormat string `json:"legendFormat"`
		} `json:"targets"`
	}
	var d struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var out []target
	var walk func([]json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatal(err)
			}
			for i, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %d %q target %d has no expr", p.ID, p.Title, i)
					continue
				}
				out = append(out, target{where: fmt.Sprintf("panel %d %q", p.ID, p.Title), expr: tg.Expr, legend: tg.LegendFormat})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				t.Fatalf("variable %s: query %s", v.Name, v.Query)
			}
		}
		expr, label, ok := labelValues(q.Query)
		if !ok {
			t.Errorf("variable %s: %q is not a label_values query this test can check", v.Name, q.Query)
			continue
		}
		out = append(out, target{where: "variable $" + v.Name, expr: expr, label: label})
	}
	return out
}

var legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// scrapeLabels are added by Prometheus to every series it scrapes (and by
// the Prometheus Operator from the pod and Service), so queries may group
// by them although no collector declares them.
var scrapeLabels = []string{"job", "instance", "pod", "container", "service", "endpoint"}

// checkTarget lists what is wrong with one query against the catalog, and
// returns the metrics it reads.
func checkTarget(cat catalog, tg target) (problems, metrics []string) {
	q, err := parseQuery(tg.expr)
	if err != nil {
		return []string{err.Error()}, nil
	}
	if len(q.Selectors) == 0 {
		problems = append(problems, fmt.Sprintf("%q reads no metric", tg.expr))
	}
	// Labels the result may carry: the selected series' labels.
	have := map[string]bool{}
	for _, l := range scrapeLabels {
		have[l] = true
	}
	for _, s := range q.Selectors {
		metrics = append(metrics, s.Metric)
		ser, ok := cat[s.Metric]
		if !ok {
			problems = append(problems, fmt.Sprintf("metric %s is registered by no Swell component (%s)", s.Metric, tg.expr))
			continue
		}
		for _, l := range s.Labels {
			if !ser.labels[l] && !slices.Contains(scrapeLabels, l) {
				problems = append(problems, fmt.Sprintf("%s has no label %q (it has %v)", s.Metric, l, keys(ser.labels)))
			}
		}
		for l := range ser.labels {
			have[l] = true
		}
	}
	for _, l := range q.Grouping {
		if !have[l] {
			problems = append(problems, fmt.Sprintf("groups by %q, which none of its metrics has (%s)", l, tg.expr))
		}
	}
	if tg.label != "" && !have[tg.label] {
		problems = append(problems, fmt.Sprintf("lists label %q, which none of its metrics has", tg.label))
	}
	// A legend can only print labels the result keeps: after an
	// aggregation with by (...), only those.
	legendHas := have
	if len(q.Grouping) > 0 && strings.Contains(tg.expr, " by (") {
		legendHas = map[string]bool{}
		for _, l := range q.Grouping {
			legendHas[l] = true
		}
	}
	for _, m := range legendLabel.FindAllStringSubmatch(tg.legend, -1) {
		if !legendHas[m[1]] {
			problems = append(problems, fmt.Sprintf("legend %q prints {{%s}}, which the result does not carry (%s)", tg.legend, m[1], tg.expr))
		}
	}
	return problems, metrics
}

func TestDashboardUsesRegisteredMetrics(t *testing.T) {
	cat := swellCatalog(t)
	for _, want := range []string{"swell_qworker_backlog", "swell_cpa_method_duration_seconds_bucket", "swell_external_scaler_requests_total", "swell_nodepool_slots", "go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := cat[want]; !ok {
			t.Fatalf("the registries lack %s: the catalog is incomplete", want)
		}
	}
	targets := dashboardTargets(t, "swell-dashboard.json")
	if len(targets) == 0 {
		t.Fatal("no queries found in the dashboard")
	}
	byComponent := map[string]map[string]bool{}
	for _, tg := range targets {
		problems, metrics := checkTarget(cat, tg)
		for _, p := range problems {
			t.Errorf("%s: %s", tg.where, p)
		}
		for _, m := range metrics {
			if c, ok := cat[m]; ok {
				if byComponent[c.component] == nil {
					byComponent[c.component] = map[string]bool{}
				}
				byComponent[c.component][m] = true
			}
		}
	}
	comps := keys(map[string]bool{})
	for c := range byComponent {
		comps = append(comps, c)
	}
	sort.Strings(comps)
	t.Logf("%d queries checked against %d registered series", len(targets), len(cat))
	for _, c := range comps {
		t.Logf("%s: %d metrics: %s", c, len(byComponent[c]), strings.Join(keys(byComponent[c]), " "))
	}
}

// TestDashboardCheckCatchesMistakes: each kind of mistake the check looks
// for is reported, and a correct query is not.
func TestDashboardCheckCatchesMistakes(t *testing.T) {
	cat := swellCatalog(t)
	for _, tc := range []struct {
		tg   target
		want string
	}{
		{target{expr: `sum(rate(swell_qworker_pods_created_total[5m]))`}, ""},
		{target{expr: `sum(swell_qworker_backlogs)`}, "registered by no Swell component"},
		{target{expr: `swell_qworker_backlog{scaledobject="x"}`}, `has no label "scaledobject"`},
		{target{expr: `sum by (rpc) (swell_qworker_backlog)`}, `groups by "rpc"`},
		{target{expr: `sum by (namespace) (swell_cpa_scales_total)`, legend: "{{direction}}"}, "prints {{direction}}"},
		{target{expr: `swell_external_scaler_request_duration_seconds{rpc="IsActive"}`}, "registered by no Swell component"},
		{target{expr: `swell_qworker_backlog`, label: "stage"}, `lists label "stage"`},
	} {
		problems, _ := checkTarget(cat, tc.tg)
		got := strings.Join(problems, "; ")
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%+v: problems %q, want %q", tc.tg, got, tc.want)
		}
	}
}

func keys(m map[string]bool) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}

func TestKind(t *testing.T) {
	for _, tc := range []struct {
		c    prometheus.Collector
		want string
	}{
		{prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h"}), "histogram"},
		{prometheus.NewSummary(prometheus.SummaryOpts{Name: "s"}), "summary"},
		{prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hv"}, []string{"l"}), "histogram"},
		{prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"}), ""},
		{prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cv"}, []string{"l"}), ""},
	} {
		if got := kind(tc.c); got != tc.want {
			t.Errorf("kind(%T) = %q, want %q", tc.c, got, tc.want)
		}
	}
}
