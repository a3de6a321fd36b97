package cpa

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

func TestAPIRoutes(t *testing.T) {
	cases := []struct {
		name, method, path string
		wantCode           int
		wantBody           string
		wantReplicas       int32
	}{
		{"metrics", "GET", "/api/v1/metrics", 200, `[{"resource":"web","value":"5"}]`, 2},
		{"metrics dry run", "GET", "/api/v1/metrics?dry_run=true", 200, `[{"resource":"web","value":"5"}]`, 2},
		{"evaluation scales", "POST", "/api/v1/evaluation", 200, `{"targetReplicas":6}`, 6},
		{"evaluation dry_run=false scales", "POST", "/api/v1/evaluation?dry_run=false", 200, `{"targetReplicas":6}`, 6},
		{"evaluation dry run changes nothing", "POST", "/api/v1/evaluation?dry_run=true", 200, `{"targetReplicas":6}`, 2},
		{"bad dry_run", "POST", "/api/v1/evaluation?dry_run=maybe", 400, `{"message":"Invalid format for 'dry_run' query parameter; 'maybe' is not a valid boolean value","code":400}`, 2},
		{"bad dry_run on metrics", "GET", "/api/v1/metrics?dry_run=2", 400, `"code":400`, 2},
		{"unknown path", "GET", "/api/v1/nothing", 404, `{"message":"Resource '/api/v1/nothing' not found","code":404}`, 2},
		{"root", "GET", "/", 404, `"code":404`, 2},
		{"wrong method on metrics", "POST", "/api/v1/metrics", 405, `{"message":"Method 'POST' not allowed on resource '/api/v1/metrics'","code":405}`, 2},
		{"wrong method on evaluation", "GET", "/api/v1/evaluation", 405, `"code":405`, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, nil)
			r.runner.set("evaluate", answer(targetJSON(6)))
			srv := httptest.NewServer(r.a.APIHandler())
			defer srv.Close()
			code, body := do(t, c.method, srv.URL+c.path)
			if code != c.wantCode || !strings.Contains(body, c.wantBody) {
				t.Fatalf("%s %s = %d %s, want %d containing %s", c.method, c.path, code, body, c.wantCode, c.wantBody)
			}
			if got := r.target.current(); got != c.wantReplicas {
				t.Fatalf("replicas = %d, want %d", got, c.wantReplicas)
			}
		})
	}
}

func TestAPIRunTypes(t *testing.T) {
	r := newRig(t, nil)
	r.runner.set("evaluate", answer(targetJSON(2)))
	srv := httptest.NewServer(r.a.APIHandler())
	defer srv.Close()
	for i, c := range []struct{ path, want string }{
		{"/api/v1/evaluation?dry_run=true", RunTypeAPIDryRun},
		{"/api/v1/evaluation", RunTypeAPI},
	} {
		if code, body := do(t, "POST", srv.URL+c.path); code != 200 {
			t.Fatalf("%s: %d %s", c.path, code, body)
		}
		if got := r.runner.input(t, "evaluate", i)["runType"]; got != c.want {
			t.Errorf("%s: runType %v, want %s", c.path, got, c.want)
		}
	}
}

func TestAPIStageFailureIs500AndHolds(t *testing.T) {
	r := newRig(t, nil)
	r.runner.set("evaluate", answer(`{"nope": 1}`))
	srv := httptest.NewServer(r.a.APIHandler())
	defer srv.Close()
	code, body := do(t, "POST", srv.URL+"/api/v1/evaluation")
	var e APIError
	if err := json.Unmarshal([]byte(body), &e); err != nil || code != 500 || e.Code != 500 || !strings.Contains(e.Message, "targetReplicas") {
		t.Fatalf("got %d %s, want a JSON 500 naming targetReplicas", code, body)
	}
	if r.target.current() != 2 {
		t.Fatal("a failed evaluation must not scale")
	}
}

func TestHealthHandler(t *testing.T) {
	r := newRig(t, nil)
	srv := httptest.NewServer(r.a.HealthHandler())
	defer srv.Close()
	if code, _ := do(t, "GET", srv.URL+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, _ := do(t, "GET", srv.URL+"/readyz"); code != 503 {
		t.Fatalf("/readyz before any pass = %d, want 503", code)
	}
	r.runner.set("evaluate", answer("garbage"))
	_ = r.a.Tick(t.Context())
	if code, body := do(t, "GET", srv.URL+"/readyz"); code != 503 || !strings.Contains(body, "last pass failed") {
		t.Fatalf("/readyz after a failed pass = %d %s", code, body)
	}
	r.runner.set("evaluate", answer(targetJSON(3)))
	_ = r.a.Tick(t.Context())
	if code, _ := do(t, "GET", srv.URL+"/readyz"); code != 200 {
		t.Fatalf("/readyz after a good pass = %d", code)
	}
}

func do(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAPIRefusesOversizedMetricOutput runs the real Executor behind the
// REST API: a metric command printing 30 MiB fails the request with the
// output limit named, and nothing of it is served.
func TestAPIRefusesOversizedMetricOutput(t *testing.T) {
	cases := []struct {
		name     string
		bytes    int
		wantCode int
		want     string
	}{
		{"within the limit", 1 << 20, 200, `"resource":"web"`},
		{"30 MiB", 30 << 20, 500, "output larger than 4194304 bytes (4 MiB), refused"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := NewConfig()
			cfg.ScaleTargetRef = &autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}
			cfg.RunMode = PerResource
			cfg.Metric = shellMethod(20000, "sh", "-c", fmt.Sprintf("head -c %d /dev/zero | tr '\\0' x", c.bytes))
			cfg.Evaluate = shellMethod(0, "echo", `{"targetReplicas": 2}`)
			a, err := New(Options{Config: cfg, Target: &fakeTarget{replicas: 2}, Runner: NewExecutor()})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(a.APIHandler())
			defer srv.Close()
			code, body := do(t, "GET", srv.URL+"/api/v1/metrics")
			if code != c.wantCode || !strings.Contains(body, c.want) {
				t.Fatalf("GET /api/v1/metrics = %d (%d bytes) %.200s; want %d containing %q", code, len(body), body, c.wantCode, c.want)
			}
			if c.wantCode != 200 && len(body) > 4096 {
				t.Fatalf("served %d bytes with the error; the refused output must not be served", len(body))
			}
		})
	}
}
