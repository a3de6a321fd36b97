package externalscaler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
)

const httpTimeout = 10 * time.Second

// httpProbe GETs a JSON document and extracts one number from it.
type httpProbe struct {
	url     string
	token   brokerconn.Secret
	client  *http.Client
	extract func(any) (float64, error)
}

func (p *httpProbe) Close() error { return nil }

func (p *httpProbe) measure(ctx context.Context, now time.Time) (Reading, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return Reading{}, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token.Reveal())
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return Reading{}, redactURLError(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return Reading{}, fmt.Errorf("GET %s: HTTP %d", hostOf(p.url), resp.StatusCode)
	}
	var doc any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&doc); err != nil {
		return Reading{}, fmt.Errorf("GET %s: answer is not JSON: %w", hostOf(p.url), err)
	}
	v, err := p.extract(doc)
	if err != nil {
		return Reading{}, fmt.Errorf("GET %s: %w", hostOf(p.url), err)
	}
	return Reading{At: now, Values: map[string]float64{"backlog": v}}, nil
}

// httpClient is the client of an HTTP source whose credentials f has read
// (call it after them): it dials under the egress policy, drops credentials
// on a redirect off the first request's origin, and, when a credential of
// the secrets directory is used, refuses a redirect to an address not
// declared for it, as a request naming that address would be refused.
func (p *Parser) httpClient(f *fields) *http.Client {
	c := p.Egress.HTTPClient(httpTimeout, nil)
	if len(f.fileCreds) == 0 {
		return c
	}
	c.CheckRedirect = boundRedirect(p.Files.Bindings, append([]string(nil), f.fileCreds...))
	return c
}

func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return "(url)"
}

func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s %s: %w", ue.Op, hostOf(ue.URL), ue.Err)
	}
	return err
}

func checkHTTPURL(f *fields, key, raw string) {
	u, err := url.Parse(raw)
	if raw != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		f.fail("metadata %q must be an http:// or https:// URL", key)
	}
	if err == nil && u.User != nil {
		f.fail("metadata %q must not hold credentials; use \"bearerTokenFromEnv\" or \"bearerTokenFile\"", key)
	}
}

// valueAt walks a dot path ("a.b.0.c") through decoded JSON to a number
// (or a numeric string).
func valueAt(doc any, path string) (float64, error) {
	cur := doc
	for _, part := range strings.Split(path, ".") {
		switch node := cur.(type) {
		case map[string]any:
			v, ok := node[part]
			if !ok {
				return 0, fmt.Errorf("valueLocation %q: no key %q", path, part)
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(node) {
				return 0, fmt.Errorf("valueLocation %q: %q is not an index of an array of %d", path, part, len(node))
			}
			cur = node[i]
		default:
			return 0, fmt.Errorf("valueLocation %q: %q is below a scalar", path, part)
		}
	}
	return number(cur, path)
}

func number(v any, path string) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case string:
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return 0, fmt.Errorf("valueLocation %q: %q is not a number", path, x)
		}
		return f, nil
	}
	return 0, fmt.Errorf("valueLocation %q: value %v is not a number", path, v)
}

// parseHTTP: a number at valueLocation in a JSON document (KEDA
// metrics-api style).
func parseHTTP(p *Parser, f *fields) (*Spec, error) {
	raw := f.required("the JSON endpoint, https://host/path", "url")
	checkHTTPURL(f, "url", raw)
	loc := f.required("a dot path to the number, e.g. \"stats.queue.depth\" or \"items.0.count\"", "valueLocation")
	token := f.secret("bearerToken")
	m, act := backlogMetric(f, "http-value", 1, "targetValue")
	pr := &httpProbe{url: raw, token: token, client: p.httpClient(f),
		extract: func(doc any) (float64, error) { return valueAt(doc, loc) }}
	return &Spec{
		dests:  []string{urlDest(raw, httpPorts)},
		Source: "http", Metrics: []MetricDef{m}, Activation: act,
		Key:    fmt.Sprintf("http url=%s valueLocation=%s", raw, loc),
		target: funcTarget(func(context.Context) (probe, error) { return pr, nil }),
	}, nil
}

// parsePrometheus: an instant query's single value. An empty result is 0
// with ignoreNullValues "true" (the default, as KEDA), an error otherwise.
func parsePrometheus(p *Parser, f *fields) (*Spec, error) {
	server := f.required("http://prometheus:9090", "serverAddress")
	checkHTTPURL(f, "serverAddress", server)
	query := f.required("a PromQL query returning one value", "query")
	ignoreNull := f.boolean(true, "ignoreNullValues")
	token := f.secret("bearerToken")
	m, act := backlogMetric(f, "prometheus-query", 1, "threshold")
	u := strings.TrimRight(server, "/") + "/api/v1/query?query=" + url.QueryEscape(query)
	pr := &httpProbe{url: u, token: token, client: p.httpClient(f),
		extract: func(doc any) (float64, error) { return promValue(doc, ignoreNull) }}
	return &Spec{
		dests:  []string{urlDest(server, httpPorts)},
		Source: "prometheus", Metrics: []MetricDef{m}, Activation: act,
		Key:    fmt.Sprintf("prometheus server=%s query=%s ignoreNull=%t", server, query, ignoreNull),
		target: funcTarget(func(context.Context) (probe, error) { return pr, nil }),
	}, nil
}

// promValue reads {"status":"success","data":{"resultType":"vector"|
// "scalar","result":...}}.
func promValue(doc any, ignoreNull bool) (float64, error) {
	b, _ := json.Marshal(doc)
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Status != "success" {
		return 0, fmt.Errorf("prometheus query failed: %s", r.Error)
	}
	switch r.Data.ResultType {
	case "scalar":
		var pair []any
		_ = json.Unmarshal(r.Data.Result, &pair)
		if len(pair) != 2 {
			return 0, errors.New("prometheus scalar result is malformed")
		}
		return number(pair[1], "scalar")
	case "vector":
		return promVector(r.Data.Result, ignoreNull)
	}
	return 0, fmt.Errorf("prometheus result type %q is not vector or scalar", r.Data.ResultType)
}

func promVector(raw json.RawMessage, ignoreNull bool) (float64, error) {
	var vec []struct {
		Value []any `json:"value"`
	}
	if err := json.Unmarshal(raw, &vec); err != nil {
		return 0, fmt.Errorf("prometheus vector result is malformed: %w", err)
	}
	switch {
	case len(vec) == 0 && ignoreNull:
		return 0, nil
	case len(vec) == 0:
		return 0, errors.New("prometheus query returned no series (set ignoreNullValues \"true\" to read it as 0)")
	case len(vec) > 1:
		return 0, fmt.Errorf("prometheus query returned %d series; aggregate it to one (e.g. sum(...))", len(vec))
	case len(vec[0].Value) != 2:
		return 0, errors.New("prometheus vector sample is malformed")
	}
	return number(vec[0].Value[1], "value")
}
