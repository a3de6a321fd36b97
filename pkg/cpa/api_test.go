package cpa

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

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

// doAuth sends a request with the given Authorization header (none when
// empty) and returns the status, body and response headers.
func doAuth(t *testing.T, method, url, authorization string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// evaluations counts how often the evaluate stage ran.
func (r *fakeRunner) evaluations() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.inputs["evaluate"])
}

func TestAPIAccessBearerToken(t *testing.T) {
	const token = "s3cr3t-token-value"
	cases := []struct {
		name, authorization string
		wantCode            int
		wantReplicas        int32
	}{
		{"no header", "", 401, 2},
		{"wrong token", "Bearer not-the-token", 401, 2},
		{"token prefix", "Bearer s3cr3t", 401, 2},
		{"token with a suffix", "Bearer " + token + "x", 401, 2},
		{"basic scheme", "Basic " + token, 401, 2},
		{"token alone", token, 401, 2},
		{"right token", "Bearer " + token, 200, 6},
		{"scheme is case-insensitive", "bearer " + token, 200, 6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, nil)
			r.runner.set("evaluate", answer(targetJSON(6)))
			srv := httptest.NewServer(APIAccess{Token: token}.Wrap(r.a.APIHandler()))
			defer srv.Close()
			code, body, h := doAuth(t, "POST", srv.URL+"/api/v1/evaluation", c.authorization)
			if code != c.wantCode {
				t.Fatalf("status %d %s, want %d", code, body, c.wantCode)
			}
			if got := r.target.current(); got != c.wantReplicas {
				t.Fatalf("replicas %d, want %d", got, c.wantReplicas)
			}
			if code != 401 {
				return
			}
			if r.runner.evaluations() != 0 {
				t.Fatal("an unauthenticated request ran user logic")
			}
			if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") || !strings.Contains(body, `"code":401`) {
				t.Fatalf("401 without a Bearer challenge or CPA's JSON error: %v %s", h, body)
			}
			if strings.Contains(body, token) {
				t.Fatal("the 401 body repeats the token")
			}
		})
	}
}

func TestAPIAccessRateLimit(t *testing.T) {
	r := newRig(t, nil)
	r.runner.set("evaluate", answer(targetJSON(3)))
	// One request an hour after a burst of two: the third in a row is refused.
	srv := httptest.NewServer(APIAccess{Token: "t", Rate: rate.Every(time.Hour), Burst: 2}.Wrap(r.a.APIHandler()))
	defer srv.Close()
	// Unauthenticated requests do not use up the limit.
	for range 5 {
		if code, _, _ := doAuth(t, "POST", srv.URL+"/api/v1/evaluation", ""); code != 401 {
			t.Fatalf("unauthenticated: %d", code)
		}
	}
	var codes []int
	var last http.Header
	var lastBody string
	for range 3 {
		code, body, h := doAuth(t, "POST", srv.URL+"/api/v1/evaluation?dry_run=true", "Bearer t")
		codes = append(codes, code)
		last, lastBody = h, body
	}
	if fmt.Sprint(codes) != "[200 200 429]" {
		t.Fatalf("codes %v, want [200 200 429]", codes)
	}
	if last.Get("Retry-After") != "3600" || !strings.Contains(lastBody, `"code":429`) {
		t.Fatalf("429 headers %v body %s: want Retry-After 3600 and CPA's JSON error", last, lastBody)
	}
	if n := r.runner.evaluations(); n != 2 {
		t.Fatalf("evaluate ran %d times, want 2", n)
	}
	// The metrics route runs user logic too and shares the limit.
	if code, _, _ := doAuth(t, "GET", srv.URL+"/api/v1/metrics", "Bearer t"); code != 429 {
		t.Fatalf("metrics over the limit: %d, want 429", code)
	}
}

func TestAPIAccessOpenByDefault(t *testing.T) {
	r := newRig(t, nil)
	r.runner.set("evaluate", answer(targetJSON(4)))
	srv := httptest.NewServer(APIAccess{}.Wrap(r.a.APIHandler()))
	defer srv.Close()
	for range 3 {
		if code, body, _ := doAuth(t, "POST", srv.URL+"/api/v1/evaluation", ""); code != 200 {
			t.Fatalf("no token, no limit: %d %s", code, body)
		}
	}
}

func TestWarnExposure(t *testing.T) {
	cases := []struct {
		name   string
		c      APIConfig
		access APIAccess
		want   string
	}{
		{"loopback without token", APIConfig{Host: "127.0.0.1", Port: 5000}, APIAccess{}, ""},
		{"localhost without token", APIConfig{Host: "localhost", Port: 5000}, APIAccess{}, ""},
		{"all interfaces without token", APIConfig{Host: "0.0.0.0", Port: 5000}, APIAccess{}, "WITHOUT authentication"},
		{"empty host without token", APIConfig{Port: 5000}, APIAccess{}, "WITHOUT authentication"},
		{"all interfaces, token, plain HTTP", APIConfig{Host: "0.0.0.0", Port: 5000}, APIAccess{Token: "t"}, "clear text"},
		{"all interfaces, token, HTTPS", APIConfig{Host: "0.0.0.0", Port: 5000, UseHTTPS: true}, APIAccess{Token: "t"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf strings.Builder
			warnExposure(slog.New(slog.NewTextHandler(&buf, nil)), c.c, c.access)
			got := buf.String()
			if c.want == "" && got != "" || c.want != "" && (!strings.Contains(got, c.want) || !strings.Contains(got, "level=WARN")) {
				t.Fatalf("log %q, want %q", got, c.want)
			}
		})
	}
}

// TestServeAPIWithToken serves on a real loopback listener, as `swell cpa`
// does, and checks the token is enforced there.
func TestServeAPIWithToken(t *testing.T) {
	r := newRig(t, nil)
	r.runner.set("evaluate", answer(targetJSON(5)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- ServeAPI(ctx, APIConfig{Enabled: true, Host: "127.0.0.1", Port: port}, r.a.APIHandler(), APIAccess{Token: "tok"}, slog.New(slog.DiscardHandler))
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/evaluation", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("API never listened: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _, _ := doAuth(t, "POST", url, ""); code != 401 {
		t.Fatalf("without token: %d", code)
	}
	if code, body, _ := doAuth(t, "POST", url, "Bearer tok"); code != 200 || r.target.current() != 5 {
		t.Fatalf("with token: %d %s, replicas %d", code, body, r.target.current())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeAPI after cancel: %v", err)
	}
}
