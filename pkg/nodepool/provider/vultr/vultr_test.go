package vultr

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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/backoff"
)

const token = "vultr-test-api-key"

// fakeVKE answers like the Vultr API v2 and records every request govultr
// sends, so the test checks the wire.
type fakeVKE struct {
	t        *testing.T
	mu       sync.Mutex
	seen     []string // "METHOD path?query body"
	fail     bool     // answer everything with 503
	throttle int      // answer this many calls with 429 first
}

const (
	cluster = "/v2/kubernetes/clusters/vke-2"
	pool    = `{"id":"np-9","label":"servers","node_quantity":3,"nodes":[` +
		`{"id":"inst-a","label":"servers-a","status":"active"},{"id":"inst-b","label":"servers-b","status":"active"}]}`
)

func (f *fakeVKE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if got := r.Header.Get("Authorization"); got != "Bearer "+token {
		f.t.Errorf("%s %s: Authorization %q", r.Method, r.URL, got)
	}
	body, _ := io.ReadAll(r.Body)
	line := strings.TrimSpace(r.Method + " " + r.URL.RequestURI() + " " + strings.TrimSpace(string(body)))
	f.mu.Lock()
	f.seen = append(f.seen, line)
	throttled := f.throttle > 0
	if throttled {
		f.throttle--
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case throttled:
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":"Rate limit reached","status":429}`)
		return
	case f.fail:
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":"Service Unavailable","status":503}`)
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v2/kubernetes/clusters" && r.URL.Query().Get("cursor") == "":
		_, _ = io.WriteString(w, `{"vke_clusters":[{"id":"vke-1","label":"other"}],"meta":{"total":2,"links":{"next":"bmV4dA==","prev":""}}}`)
	case r.Method == http.MethodGet && r.URL.Path == "/v2/kubernetes/clusters":
		_, _ = io.WriteString(w, `{"vke_clusters":[{"id":"vke-2","label":"games"}],"meta":{"total":2,"links":{"next":"","prev":"cHJldg=="}}}`)
	case r.Method == http.MethodGet && r.URL.Path == cluster+"/node-pools":
		_, _ = io.WriteString(w, `{"node_pools":[{"id":"np-0","label":"system","node_quantity":1},`+pool+
			`,{"id":"np-5","label":"auto","node_quantity":1,"auto_scaler":true,"min_nodes":1,"max_nodes":5}],"meta":{"total":3,"links":{"next":"","prev":""}}}`)
	case r.Method == http.MethodGet && r.URL.Path == cluster+"/node-pools/np-9":
		_, _ = io.WriteString(w, `{"node_pool":`+pool+`}`)
	case r.Method == http.MethodPatch && r.URL.Path == cluster+"/node-pools/np-9":
		_, _ = io.WriteString(w, `{"node_pool":`+strings.Replace(pool, `"node_quantity":3`, `"node_quantity":5`, 1)+`}`)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, cluster+"/node-pools/np-9/nodes/"):
		w.WriteHeader(http.StatusNoContent)
	default:
		f.t.Errorf("unexpected request %s", line)
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":"not found","status":404}`)
	}
}

func (f *fakeVKE) take() []string {
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

func start(t *testing.T, clusterName, poolName string) (*fakeVKE, *Provider, *waits, error) {
	t.Helper()
	api := &fakeVKE{t: t}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	w := &waits{}
	p, err := New(context.Background(), Config{
		Token: token, ClusterName: clusterName, NodePoolName: poolName, BaseURL: srv.URL,
		Backoff: backoff.Policy{Burst: 100}, BackoffOptions: []backoff.Option{backoff.WithClock(time.Now, w.sleep)},
	})
	return api, p, w, err
}

func expect(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s sent\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestNewFindsClusterAndPoolAcrossPages(t *testing.T) {
	for _, c := range []struct{ cluster, pool string }{{"games", "servers"}, {"vke-2", "np-9"}} {
		api, p, _, err := start(t, c.cluster, c.pool)
		if err != nil {
			t.Fatalf("New(%s, %s): %v", c.cluster, c.pool, err)
		}
		expect(t, "New", api.take(), []string{
			"GET /v2/kubernetes/clusters?per_page=100",
			"GET /v2/kubernetes/clusters?cursor=bmV4dA%3D%3D&per_page=100",
			"GET /v2/kubernetes/clusters/vke-2/node-pools?per_page=100",
		})
		if p.clusterID != "vke-2" || p.poolID != "np-9" {
			t.Fatalf("ids = %s %s", p.clusterID, p.poolID)
		}
	}
	if _, _, _, err := start(t, "nope", "servers"); err == nil || !strings.Contains(err.Error(), `cluster-name "nope"`) {
		t.Fatalf("unknown cluster: %v", err)
	}
	if _, _, _, err := start(t, "games", "nope"); err == nil || !strings.Contains(err.Error(), `node-pool-name "nope"`) {
		t.Fatalf("unknown pool: %v", err)
	}
	if _, _, _, err := start(t, "games", "auto"); err == nil || !strings.Contains(err.Error(), "VKE's own auto scaler on") {
		t.Fatalf("pool with VKE's auto scaler: %v", err)
	}
}

func TestSizeResizeDelete(t *testing.T) {
	ctx := context.Background()
	api, p, _, err := start(t, "games", "servers")
	if err != nil {
		t.Fatal(err)
	}
	api.take()

	n, err := p.Size(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Size = %d, %v", n, err)
	}
	expect(t, "Size", api.take(), []string{"GET /v2/kubernetes/clusters/vke-2/node-pools/np-9"})

	if err := p.Resize(ctx, 5); err != nil {
		t.Fatal(err)
	}
	expect(t, "Resize", api.take(), []string{`PATCH /v2/kubernetes/clusters/vke-2/node-pools/np-9 {"node_quantity":5}`})

	err = p.Delete(ctx, []*corev1.Node{
		node("servers-a", "vultr://inst-a", map[string]string{LabelNodeID: "inst-a"}),
		node("servers-b", "vultr://inst-b", nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "Delete", api.take(), []string{
		"GET /v2/kubernetes/clusters/vke-2/node-pools/np-9",
		"DELETE /v2/kubernetes/clusters/vke-2/node-pools/np-9/nodes/inst-a",
		"DELETE /v2/kubernetes/clusters/vke-2/node-pools/np-9/nodes/inst-b",
	})
}

func TestDeleteRefusesOtherPoolsAndUnknownNodes(t *testing.T) {
	api, p, _, err := start(t, "games", "servers")
	if err != nil {
		t.Fatal(err)
	}
	api.take()
	err = p.Delete(context.Background(), []*corev1.Node{
		node("sys", "vultr://inst-sys", nil),
		node("no-id", "", nil),
	})
	for _, want := range []string{"sys (VKE node inst-sys) is not in pool np-9", "no-id has no vke.vultr.com/node-id label"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Delete error %v, want it to contain %q", err, want)
		}
	}
	expect(t, "refused Delete", api.take(), []string{"GET /v2/kubernetes/clusters/vke-2/node-pools/np-9"})
}

func TestRateLimitAndOutage(t *testing.T) {
	ctx := context.Background()
	api, p, w, err := start(t, "games", "servers")
	if err != nil {
		t.Fatal(err)
	}
	api.take()
	api.throttle = 1
	n, err := p.Size(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Size after a 429 = %d, %v", n, err)
	}
	expect(t, "throttled Size", api.take(), []string{"GET /v2/kubernetes/clusters/vke-2/node-pools/np-9", "GET /v2/kubernetes/clusters/vke-2/node-pools/np-9"})
	if !reflect.DeepEqual(w.d, []time.Duration{time.Second}) {
		t.Fatalf("waited %v, want the Retry-After of 1s", w.d)
	}

	api.fail = true
	err = p.Delete(ctx, []*corev1.Node{node("servers-a", "vultr://inst-a", nil)})
	if err == nil {
		t.Fatal("Delete during an outage succeeded")
	}
	if strings.Contains(err.Error(), token) {
		t.Fatalf("error leaks the token: %v", err)
	}
	for _, r := range api.take() {
		if strings.HasPrefix(r, "DELETE") {
			t.Fatalf("sent %s during an outage", r)
		}
	}
}

func node(name, providerID string, labels map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.NodeSpec{ProviderID: providerID}}
}
