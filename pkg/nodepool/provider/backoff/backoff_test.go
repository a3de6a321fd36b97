package backoff

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// script is a local API that answers each call with the next scripted
// status and headers, and records what it received.
type script struct {
	mu      sync.Mutex
	answers []answer
	got     []string // "METHOD path body"
}

type answer struct {
	status  int
	headers map[string]string
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.got = append(s.got, strings.TrimSpace(r.Method+" "+r.URL.Path+" "+string(body)))
	a := answer{status: http.StatusOK}
	if len(s.answers) > 0 {
		a, s.answers = s.answers[0], s.answers[1:]
	}
	s.mu.Unlock()
	for k, v := range a.headers {
		w.Header().Set(k, v)
	}
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, `{"status":"`+http.StatusText(a.status)+`"}`)
}

// fakeTime is a virtual clock: sleeping advances it and is recorded.
type fakeTime struct {
	mu    sync.Mutex
	now   time.Time
	slept []time.Duration
}

func (f *fakeTime) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }

func (f *fakeTime) Sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.slept = append(f.slept, d)
	f.now = f.now.Add(d)
	return ctx.Err()
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestRetries(t *testing.T) {
	unpaced := Policy{Rate: -1, Attempts: 4, Base: time.Second, MaxWait: 20 * time.Second, Budget: 30 * time.Second}
	cases := []struct {
		name       string
		method     string
		answers    []answer
		wantStatus int
		wantCalls  int
		wantSlept  []time.Duration
	}{
		{"ok at once", http.MethodGet, nil, 200, 1, nil},
		{"429 with Retry-After seconds", http.MethodGet,
			[]answer{{429, map[string]string{"Retry-After": "7"}}}, 200, 2, []time.Duration{7 * time.Second}},
		{"429 with Retry-After date", http.MethodPost,
			[]answer{{429, map[string]string{"Retry-After": epoch.Add(3 * time.Second).Format(http.TimeFormat)}}}, 200, 2, []time.Duration{3 * time.Second}},
		{"429 with RateLimit-Reset", http.MethodGet,
			[]answer{{429, map[string]string{"RateLimit-Reset": "1767225605"}}}, 200, 2, []time.Duration{5 * time.Second}},
		{"5xx doubles the wait", http.MethodGet,
			[]answer{{500, nil}, {502, nil}, {503, nil}}, 200, 4, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}},
		{"503 Retry-After on a PUT", http.MethodPut,
			[]answer{{503, map[string]string{"Retry-After": "2"}}}, 200, 2, []time.Duration{2 * time.Second}},
		{"gives up after the attempts", http.MethodDelete,
			[]answer{{500, nil}, {500, nil}, {500, nil}, {500, nil}, {500, nil}}, 500, 4, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}},
		{"a POST is not repeated after a 5xx", http.MethodPost,
			[]answer{{500, nil}}, 500, 1, nil},
		{"a PATCH is not repeated after a 5xx", http.MethodPatch,
			[]answer{{503, nil}}, 503, 1, nil},
		{"a Retry-After beyond MaxWait fails at once", http.MethodGet,
			[]answer{{429, map[string]string{"Retry-After": "3600"}}}, 429, 1, nil},
		{"the budget bounds the total wait", http.MethodGet,
			[]answer{{429, map[string]string{"Retry-After": "15"}}, {429, map[string]string{"Retry-After": "16"}}}, 429, 2, []time.Duration{15 * time.Second}},
		{"4xx other than 429 is final", http.MethodGet,
			[]answer{{404, nil}}, 404, 1, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			api := &script{answers: c.answers}
			srv := httptest.NewServer(api)
			defer srv.Close()
			clock := &fakeTime{now: epoch}
			hc := Client(nil, unpaced, WithClock(clock.Now, clock.Sleep))
			var body io.Reader
			if c.method != http.MethodGet && c.method != http.MethodDelete {
				body = strings.NewReader(`{"count":5}`)
			}
			req, _ := http.NewRequest(c.method, srv.URL+"/v1/pool", body)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, c.wantStatus)
			}
			if len(api.got) != c.wantCalls {
				t.Errorf("API saw %d calls %q, want %d", len(api.got), api.got, c.wantCalls)
			}
			for _, g := range api.got {
				if body != nil && !strings.HasSuffix(g, `{"count":5}`) {
					t.Errorf("a retry lost the body: %q", g)
				}
			}
			if !reflect.DeepEqual(clock.slept, c.wantSlept) {
				t.Errorf("waited %v, want %v", clock.slept, c.wantSlept)
			}
		})
	}
}

func TestTransportErrorsRetryIdempotentCalls(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens: every call is refused
	clock := &fakeTime{now: epoch}
	hc := Client(nil, Policy{Rate: -1, Attempts: 3, Base: time.Second}, WithClock(clock.Now, clock.Sleep))
	if resp, err := hc.Get(url); err == nil {
		resp.Body.Close()
		t.Fatal("GET to a closed port succeeded")
	}
	if want := []time.Duration{time.Second, 2 * time.Second}; !reflect.DeepEqual(clock.slept, want) {
		t.Fatalf("GET waited %v, want %v", clock.slept, want)
	}
	clock.slept = nil
	if resp, err := hc.Post(url, "application/json", strings.NewReader("{}")); err == nil {
		resp.Body.Close()
		t.Fatal("POST to a closed port succeeded")
	}
	if clock.slept != nil {
		t.Fatalf("POST was retried after a connection error (waited %v)", clock.slept)
	}
}

func TestPacing(t *testing.T) {
	api := &script{}
	srv := httptest.NewServer(api)
	defer srv.Close()
	clock := &fakeTime{now: epoch}
	// 2 calls a second, bursts of 3: calls 4..6 wait half a second each.
	hc := Client(nil, Policy{Rate: 2, Burst: 3}, WithClock(clock.Now, clock.Sleep))
	for range 6 {
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := []time.Duration{500 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond}
	if !reflect.DeepEqual(clock.slept, want) {
		t.Fatalf("paced %v, want %v", clock.slept, want)
	}
	// After a quiet 10 s the bucket is full again: 3 calls go at once.
	clock.now = clock.now.Add(10 * time.Second)
	clock.slept = nil
	for range 3 {
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if clock.slept != nil {
		t.Fatalf("after a quiet spell calls still waited %v", clock.slept)
	}
}

func TestCancelledContextStopsTheWait(t *testing.T) {
	api := &script{answers: []answer{{503, map[string]string{"Retry-After": "5"}}}}
	srv := httptest.NewServer(api)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	hc := Client(nil, Policy{}, WithClock(time.Now, func(context.Context, time.Duration) error {
		cancel()
		return context.Canceled
	}))
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	if resp, err := hc.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("a cancelled wait returned no error")
	}
	if len(api.got) != 1 {
		t.Fatalf("API saw %d calls after the cancel, want 1", len(api.got))
	}
}

func TestAttemptTimeout(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		first := calls == 1
		mu.Unlock()
		if first {
			<-r.Context().Done() // accepts, never answers
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	clock := &fakeTime{now: epoch}
	hc := Client(nil, Policy{Rate: -1, AttemptTimeout: 100 * time.Millisecond}, WithClock(clock.Now, clock.Sleep))
	resp, err := hc.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET after a hung attempt: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "ok" {
		t.Fatalf("body %q, %v (the attempt's timeout must not cut the answer that is returned)", b, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 || len(clock.slept) != 1 {
		t.Fatalf("calls %d, waits %v: want the hung try retried once", calls, clock.slept)
	}
}

func TestBearerClientSendsTheTokenOnEveryTry(t *testing.T) {
	var mu sync.Mutex
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		auth = append(auth, r.Header.Get("Authorization"))
		if len(auth) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	defer srv.Close()
	clock := &fakeTime{now: epoch}
	hc := BearerClient(&http.Client{Timeout: time.Minute}, "tok", Policy{Rate: -1}, WithClock(clock.Now, clock.Sleep))
	if hc.Timeout != time.Minute {
		t.Fatalf("timeout %v, want the base client's", hc.Timeout)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !reflect.DeepEqual(auth, []string{"Bearer tok", "Bearer tok"}) {
		t.Fatalf("status %d, Authorization per try %q", resp.StatusCode, auth)
	}
	if got := req.Header.Get("Authorization"); got != "" {
		t.Fatalf("the caller's request was changed: Authorization %q", got)
	}
	if !reflect.DeepEqual(clock.slept, []time.Duration{time.Second}) {
		t.Fatalf("slept %v, want the Retry-After", clock.slept)
	}
}
