package digitalocean

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/backoff"
)

const token = "dop_v1_test_token"

// fakeAPI answers like the DigitalOcean API and records every request
// godo sends, so the test checks the wire, not our own structs.
type fakeAPI struct {
	t    *testing.T
	url  string
	mu   sync.Mutex
	seen []string // "METHOD path?query body"
	fail string   // path prefix to answer with 500
	// throttle answers this many calls with 429 and Retry-After: 3 first.
	throttle int
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if got := r.Header.Get("Authorization"); got != "Bearer "+token {
		f.t.Errorf("%s %s: Authorization %q", r.Method, r.URL, got)
	}
	body, _ := io.ReadAll(r.Body)
	line := strings.TrimSpace(r.Method + " " + r.URL.RequestURI() + " " + strings.TrimSpace(string(body)))
	f.mu.Lock()
	f.seen = append(f.seen, line)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	f.mu.Lock()
	throttled := f.throttle > 0
	if throttled {
		f.throttle--
	}
	f.mu.Unlock()
	if throttled {
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"id":"too_many_requests","message":"API Rate limit exceeded."}`)
		return
	}
	if f.fail != "" && strings.HasPrefix(r.URL.Path, f.fail) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"id":"server_error","message":"boom"}`)
		return
	}
	const pools = "/v2/kubernetes/clusters/c-2/node_pools"
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v2/kubernetes/clusters" && r.URL.Query().Get("page") == "1":
		fmt.Fprintf(w, `{"kubernetes_clusters":[{"id":"c-1","name":"other"}],"links":{"pages":{"next":"%s/v2/kubernetes/clusters?page=2&per_page=200","last":"%s/v2/kubernetes/clusters?page=2&per_page=200"}},"meta":{"total":2}}`, f.url, f.url)
	case r.Method == http.MethodGet && r.URL.Path == "/v2/kubernetes/clusters":
		fmt.Fprintf(w, `{"kubernetes_clusters":[{"id":"c-2","name":"games"}],"links":{"pages":{"prev":"%s/v2/kubernetes/clusters?page=1&per_page=200","first":"%s/v2/kubernetes/clusters?page=1&per_page=200"}},"meta":{"total":2}}`, f.url, f.url)
	case r.Method == http.MethodGet && r.URL.Path == pools:
		_, _ = io.WriteString(w, `{"node_pools":[{"id":"p-0","name":"system","count":1},{"id":"p-9","name":"servers","count":3}]}`)
	case r.Method == http.MethodGet && r.URL.Path == pools+"/p-9":
		_, _ = io.WriteString(w, `{"node_pool":{"id":"p-9","name":"servers","count":3,"nodes":[{"id":"n-unlabelled","name":"servers-abc"}]}}`)
	case r.Method == http.MethodPut && r.URL.Path == pools+"/p-9":
		_, _ = io.WriteString(w, `{"node_pool":{"id":"p-9","name":"servers","count":5}}`)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, pools+"/p-9/nodes/"):
		w.WriteHeader(http.StatusAccepted)
	default:
		f.t.Errorf("unexpected request %s", line)
		w.WriteHeader(http.StatusNotFound)
	}
}

func (f *fakeAPI) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.seen
	f.seen = nil
	return out
}

// waits records the backoff's waits instead of spending them.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.d = append(w.d, d)
	return ctx.Err()
}

func start(t *testing.T) (*fakeAPI, *Provider) {
	api, p, _ := startWaits(t)
	return api, p
}

func startWaits(t *testing.T) (*fakeAPI, *Provider, *waits) {
	t.Helper()
	api := &fakeAPI{t: t}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	api.url = srv.URL
	w := &waits{}
	p, err := New(context.Background(), Config{Token: token, ClusterName: "games", NodePoolName: "servers", BaseURL: srv.URL + "/",
		Backoff: backoff.Policy{Burst: 100}, BackoffOptions: []backoff.Option{backoff.WithClock(time.Now, w.sleep)}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return api, p, w
}

func expect(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s sent\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestNewFindsClusterAndPoolAcrossPages(t *testing.T) {
	api, p := start(t)
	expect(t, "New", api.take(), []string{
		"GET /v2/kubernetes/clusters?page=1&per_page=200",
		"GET /v2/kubernetes/clusters?page=2&per_page=200",
		"GET /v2/kubernetes/clusters/c-2/node_pools?page=1&per_page=200",
	})
	if p.clusterID != "c-2" || p.poolID != "p-9" {
		t.Fatalf("ids = %s %s", p.clusterID, p.poolID)
	}
}

func TestSizeResizeDelete(t *testing.T) {
	ctx := context.Background()
	api, p := start(t)
	api.take()

	n, err := p.Size(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Size = %d, %v", n, err)
	}
	expect(t, "Size", api.take(), []string{"GET /v2/kubernetes/clusters/c-2/node_pools/p-9"})

	if err := p.Resize(ctx, 5); err != nil {
		t.Fatal(err)
	}
	expect(t, "Resize", api.take(), []string{`PUT /v2/kubernetes/clusters/c-2/node_pools/p-9 {"name":"servers","count":5}`})

	labelled := node("servers-xyz", map[string]string{LabelNodeID: "n-1", LabelNodePoolID: "p-9"})
	unlabelled := node("servers-abc", nil)
	if err := p.Delete(ctx, []*corev1.Node{labelled, unlabelled}); err != nil {
		t.Fatal(err)
	}
	expect(t, "Delete", api.take(), []string{
		"DELETE /v2/kubernetes/clusters/c-2/node_pools/p-9/nodes/n-1",
		"GET /v2/kubernetes/clusters/c-2/node_pools/p-9",
		"DELETE /v2/kubernetes/clusters/c-2/node_pools/p-9/nodes/n-unlabelled",
	})
}

func TestDeleteRefusesOtherPoolsAndUnknownNodes(t *testing.T) {
	api, p := start(t)
	api.take()
	err := p.Delete(context.Background(), []*corev1.Node{
		node("sys", map[string]string{LabelNodeID: "n-7", LabelNodePoolID: "p-0"}),
		node("stranger", nil),
	})
	if err == nil || !strings.Contains(err.Error(), "not deleting it") || !strings.Contains(err.Error(), "stranger") {
		t.Fatalf("Delete error = %v", err)
	}
	for _, r := range api.take() {
		if strings.HasPrefix(r, "DELETE") {
			t.Fatalf("sent %s", r)
		}
	}
}

func TestErrorsNeverCarryTheToken(t *testing.T) {
	api, p := start(t)
	api.fail = "/v2/kubernetes/clusters/c-2/node_pools/p-9"
	err := p.Resize(context.Background(), 4)
	if err == nil {
		t.Fatal("Resize against a failing API succeeded")
	}
	if strings.Contains(err.Error(), token) {
		t.Fatalf("error leaks the token: %v", err)
	}
	if _, err := New(context.Background(), Config{Token: token, ClusterName: "nope", NodePoolName: "servers", BaseURL: api.url + "/"}); err == nil || !strings.Contains(err.Error(), `cluster-name "nope"`) {
		t.Fatalf("unknown cluster: %v", err)
	}
}

func TestRateLimitedCallsWaitAndRetry(t *testing.T) {
	api, p, w := startWaits(t)
	api.take()
	w.d = nil
	api.throttle = 2
	if err := p.Resize(context.Background(), 5); err != nil {
		t.Fatalf("Resize after two 429s: %v", err)
	}
	body := `PUT /v2/kubernetes/clusters/c-2/node_pools/p-9 {"name":"servers","count":5}`
	expect(t, "Resize", api.take(), []string{body, body, body})
	if want := []time.Duration{3 * time.Second, 3 * time.Second}; !reflect.DeepEqual(w.d, want) {
		t.Fatalf("waited %v, want Retry-After %v", w.d, want)
	}
}

func TestOutageFailsAfterBoundedRetries(t *testing.T) {
	api, p, w := startWaits(t)
	api.take()
	w.d = nil
	api.fail = "/v2/kubernetes/clusters/c-2/node_pools/p-9"
	if _, err := p.Size(context.Background()); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("Size during an outage: %v", err)
	}
	if got := api.take(); len(got) != backoff.Default.Attempts {
		t.Fatalf("Size sent %d requests during an outage, want %d: %q", len(got), backoff.Default.Attempts, got)
	}
	if len(w.d) != backoff.Default.Attempts-1 {
		t.Fatalf("waits %v", w.d)
	}
}

func node(name string, labels map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}
