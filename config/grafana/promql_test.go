package grafana_test

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// selector is one metric a PromQL expression reads, with the label names
// its matchers use.
type selector struct {
	Metric string
	Labels []string
}

// query is what an expression references: the metrics it selects and the
// labels it groups or joins by (by, without, on, ignoring, group_left/right).
type query struct {
	Selectors []selector
	Grouping  []string
}

// promqlKeywords are identifiers that are neither metrics nor functions.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"inf": true, "nan": true, "Inf": true, "NaN": true,
}

// groupingKeywords take a parenthesised list of label names.
var groupingKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

var plainMetricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

type token struct {
	kind string // ident, string, number, punct
	text string
}

// lex splits a PromQL expression, with Grafana's $variables in it, into
// tokens. Ranges and subqueries ([5m], [$__rate_interval:1m]) are dropped.
func lex(expr string) ([]token, error) {
	var toks []token
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unterminated string at %d in %q", i, expr)
			}
			toks = append(toks, token{"string", expr[i+1 : j]})
			i = j + 1
		case c == '[':
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unterminated range at %d in %q", i, expr)
			}
			i += j + 1
		case c == '$':
			// A Grafana variable ($x, ${x}) outside a string or range stands
			// for a value, e.g. a number or duration.
			j := i + 1
			if j < len(expr) && expr[j] == '{' {
				k := strings.IndexByte(expr[j:], '}')
				if k < 0 {
					return nil, fmt.Errorf("unterminated variable at %d in %q", i, expr)
				}
				j += k + 1
			} else {
				for j < len(expr) && (isIdentChar(expr[j]) || expr[j] == ':') {
					j++
				}
			}
			toks = append(toks, token{"number", expr[i:j]})
			i = j
		case isIdentStart(c):
			j := i + 1
			for j < len(expr) && (isIdentChar(expr[j]) || expr[j] == ':') {
				j++
			}
			toks = append(toks, token{"ident", expr[i:j]})
			i = j
		case c >= '0' && c <= '9' || c == '.':
			j := i + 1
			for j < len(expr) && (isIdentChar(expr[j]) || expr[j] == '.') {
				j++
			}
			toks = append(toks, token{"number", expr[i:j]})
			i = j
		default:
			// Two-character operators matter only as matcher operators.
			if i+1 < len(expr) && strings.Contains("=~!=", expr[i:i+2]) && (expr[i:i+2] == "=~" || expr[i:i+2] == "!=" || expr[i:i+2] == "!~" || expr[i:i+2] == "==") {
				toks = append(toks, token{"punct", expr[i : i+2]})
				i += 2
				continue
			}
			toks = append(toks, token{"punct", string(c)})
			i++
		}
	}
	return toks, nil
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isIdentChar(c byte) bool  { return isIdentStart(c) || c >= '0' && c <= '9' }

// parseQuery finds the metrics, matcher labels and grouping labels of a
// PromQL expression. It is not a full parser: it knows the shapes that name
// metrics and labels (selectors, {__name__=~"a|b"}, grouping clauses), and
// treats every other identifier followed by "(" as a function.
func parseQuery(expr string) (query, error) {
	toks, err := lex(expr)
	if err != nil {
		return query{}, err
	}
	var q query
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		next := func(k int) token {
			if i+k < len(toks) {
				return toks[i+k]
			}
			return token{}
		}
		switch {
		case t.kind == "ident" && groupingKeywords[t.text]:
			if next(1).text != "(" {
				continue // group_left without labels
			}
			j := i + 2
			for ; j < len(toks) && toks[j].text != ")"; j++ {
				if toks[j].kind == "ident" {
					q.Grouping = append(q.Grouping, toks[j].text)
				}
			}
			i = j
		case t.kind == "ident" && promqlKeywords[t.text]:
		case t.kind == "ident" && (next(1).text == "(" || next(1).text == "by" || next(1).text == "without"):
			// A function, or an aggregation (sum by (x) (...)).
		case t.kind == "ident":
			sel := selector{Metric: t.text}
			if next(1).text == "{" {
				labels, names, end, err := matchers(toks, i+1)
				if err != nil {
					return query{}, fmt.Errorf("%s: %w", expr, err)
				}
				if len(names) > 0 {
					return query{}, fmt.Errorf("%s: %s{__name__...} names the metric twice", expr, t.text)
				}
				sel.Labels, i = labels, end
			}
			q.Selectors = append(q.Selectors, sel)
		case t.text == "{":
			// A selector without a metric name: {__name__=~"a|b", ...}.
			labels, names, end, err := matchers(toks, i)
			if err != nil {
				return query{}, fmt.Errorf("%s: %w", expr, err)
			}
			if len(names) == 0 {
				return query{}, fmt.Errorf("%s: a selector without a metric name matches any metric", expr)
			}
			for _, n := range names {
				q.Selectors = append(q.Selectors, selector{Metric: n, Labels: labels})
			}
			i = end
		}
	}
	return q, nil
}

// matchers reads {label op "value", ...} starting at toks[start] == "{". It
// returns the label names other than __name__, the metric names a
// __name__="x" or __name__=~"a|b" matcher allows, and the index of "}".
func matchers(toks []token, start int) (labels, names []string, end int, err error) {
	for i := start + 1; i < len(toks); i++ {
		switch t := toks[i]; {
		case t.text == "}":
			return labels, names, i, nil
		case t.text == ",":
		case t.kind == "ident" && i+2 < len(toks) && toks[i+2].kind == "string":
			op, val := toks[i+1].text, toks[i+2].text
			if t.text != "__name__" {
				labels = append(labels, t.text)
			} else {
				if op != "=" && op != "=~" {
					return nil, nil, 0, fmt.Errorf("__name__%s%q: only = and =~ name metrics", op, val)
				}
				for _, n := range strings.Split(val, "|") {
					if !plainMetricName.MatchString(n) {
						return nil, nil, 0, fmt.Errorf("__name__%s%q: %q is a pattern, not a metric name", op, val, n)
					}
					names = append(names, n)
				}
			}
			i += 2
		default:
			return nil, nil, 0, fmt.Errorf("unexpected %q in a label matcher", t.text)
		}
	}
	return nil, nil, 0, fmt.Errorf("unterminated label matcher")
}

// labelValues splits Grafana's label_values(expr, label) and
// label_values(label) variable queries; ok is false for other queries.
func labelValues(q string) (expr, label string, ok bool) {
	q = strings.TrimSpace(q)
	inner, found := strings.CutPrefix(q, "label_values(")
	if !found || !strings.HasSuffix(inner, ")") {
		return "", "", false
	}
	inner = strings.TrimSuffix(inner, ")")
	if i := strings.LastIndexByte(inner, ','); i >= 0 {
		return strings.TrimSpace(inner[:i]), strings.TrimSpace(inner[i+1:]), true
	}
	return "", strings.TrimSpace(inner), true
}

func TestParseQuery(t *testing.T) {
	for _, tc := range []struct {
		expr     string
		want     []string // metric{label,label}
		grouping []string
		err      string
	}{
		{expr: `up`, want: []string{"up{}"}},
		{expr: `sum by (namespace, qworker) (rate(swell_x_total{namespace=~"$namespace", qworker!="a,b}"}[$__rate_interval]))`,
			want: []string{"swell_x_total{namespace,qworker}"}, grouping: []string{"namespace", "qworker"}},
		{expr: `histogram_quantile(0.99, sum without (pod) (rate(h_bucket[5m])))`, want: []string{"h_bucket{}"}, grouping: []string{"pod"}},
		{expr: `time() - max by (a) (ts_seconds{b="1"})`, want: []string{"ts_seconds{b}"}, grouping: []string{"a"}},
		{expr: `a / on (x) group_left (y) b offset 5m and c unless bool d`, want: []string{"a{}", "b{}", "c{}", "d{}"}, grouping: []string{"x", "y"}},
		{expr: `{__name__=~"m_one|m_two", namespace="n"}`, want: []string{"m_one{namespace}", "m_two{namespace}"}},
		{expr: `sum(rate(recorded:rule:rate5m[1m])) > 1e3`, want: []string{"recorded:rule:rate5m{}"}},
		{expr: `rate(x[$__rate_interval:1m]) * ${factor}`, want: []string{"x{}"}},
		{expr: `{__name__=~"swell_.*"}`, err: "is a pattern"},
		{expr: `{job="x"}`, err: "matches any metric"},
		{expr: `m{a="x"`, err: "unterminated"},
	} {
		q, err := parseQuery(tc.expr)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want %q", tc.expr, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		var got []string
		for _, s := range q.Selectors {
			l := slices.Clone(s.Labels)
			sort.Strings(l)
			got = append(got, s.Metric+"{"+strings.Join(l, ",")+"}")
		}
		if !slices.Equal(got, tc.want) || !slices.Equal(q.Grouping, tc.grouping) {
			t.Errorf("%s:\n got %v grouping %v\nwant %v grouping %v", tc.expr, got, q.Grouping, tc.want, tc.grouping)
		}
	}
}

func TestLabelValues(t *testing.T) {
	for _, tc := range []struct{ q, expr, label string }{
		{`label_values(m{a=~"$a"}, b)`, `m{a=~"$a"}`, "b"},
		{`label_values({__name__=~"x|y"}, namespace)`, `{__name__=~"x|y"}`, "namespace"},
		{`label_values(job)`, "", "job"},
	} {
		expr, label, ok := labelValues(tc.q)
		if !ok || expr != tc.expr || label != tc.label {
			t.Errorf("labelValues(%s) = %q, %q, %v", tc.q, expr, label, ok)
		}
	}
	if _, _, ok := labelValues(`query_result(up)`); ok {
		t.Error("query_result taken for label_values")
	}
}
