package linode

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

const token = "linode-test-token"

// fakeLKE answers like the Linode API v4 and records every request
// linodego sends, so the test checks the wire.
type fakeLKE struct {
	t        *testing.T
	mu       sync.Mutex
	seen     []string // "METHOD path?query body"
	fail     bool     // answer everything with 500
	throttle int      // answer this many calls with 429 first
}

func (f *fakeLKE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"errors":[{"reason":"Too many requests"}]}`)
		return
	case f.fail:
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"errors":[{"reason":"Internal Server Error"}]}`)
		return
	}
	const cluster = "/v4/lke/clusters/42"
	pool := `{"id":7,"label":"servers","count":3,"type":"g6-standard-4","nodes":[` +
		`{"id":"7-aaaa","instance_id":1001,"status":"ready"},{"id":"7-bbbb","instance_id":1002,"status":"ready"},{"id":"7-cccc","instance_id":1003,"status":"not_ready"}]}`
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v4/lke/clusters" && r.URL.Query().Get("page") == "1":
		_, _ = io.WriteString(w, `{"data":[{"id":41,"label":"other"}],"page":1,"pages":2,"results":2}`)
	case r.Method == http.MethodGet && r.URL.Path == "/v4/lke/clusters" && r.URL.Query().Get("page") == "2":
		_, _ = io.WriteString(w, `{"data":[{"id":42,"label":"games"}],"page":2,"pages":2,"results":2}`)
	case r.Method == http.MethodGet && r.URL.Path == cluster+"/pools":
		fmt.Fprintf(w, `{"data":[{"id":6,"label":"system","count":1,"nodes":[]},%s,{"id":8,"label":"auto","count":1,"nodes":[],"autoscaler":{"enabled":true,"min":1,"max":5}}],"page":1,"pages":1,"results":3}`, pool)
	case r.Method == http.MethodGet && r.URL.Path == cluster+"/pools/7":
		_, _ = io.WriteString(w, pool)
	case r.Method == http.MethodPut && r.URL.Path == cluster+"/pools/7":
		_, _ = io.WriteString(w, strings.Replace(pool, `"count":3`, `"count":5`, 1))
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, cluster+"/nodes/"):
		_, _ = io.WriteString(w, `{}`)
	default:
		f.t.Errorf("unexpected request %s", line)
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"errors":[{"reason":"Not found"}]}`)
	}
}

func (f *fakeLKE) take() []string {
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

func start(t *testing.T, cluster, pool string) (*fakeLKE, *Provider, *waits, error) {
	t.Helper()
	api := &fakeLKE{t: t}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	w := &waits{}
	p, err := New(context.Background(), Config{
		Token: token, ClusterName: cluster, NodePoolName: pool, BaseURL: srv.URL + "/v4",
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

func TestNewFindsClusterAndPool(t *testing.T) {
	for _, c := range []struct{ cluster, pool string }{{"games", "servers"}, {"42", "7"}} {
		api, p, _, err := start(t, c.cluster, c.pool)
		if err != nil {
			t.Fatalf("New(%s, %s): %v", c.cluster, c.pool, err)
		}
		expect(t, "New", api.take(), []string{
			"GET /v4/lke/clusters?page=1",
			"GET /v4/lke/clusters?page=2",
			"GET /v4/lke/clusters/42/pools?page=1",
		})
		if p.clusterID != 42 || p.poolID != 7 {
			t.Fatalf("ids = %d %d", p.clusterID, p.poolID)
		}
	}
	if _, _, _, err := start(t, "nope", "servers"); err == nil || !strings.Contains(err.Error(), `cluster-name "nope"`) {
		t.Fatalf("unknown cluster: %v", err)
	}
	if _, _, _, err := start(t, "games", "nope"); err == nil || !strings.Contains(err.Error(), `node-pool-name "nope"`) {
		t.Fatalf("unknown pool: %v", err)
	}
	if _, _, _, err := start(t, "games", "auto"); err == nil || !strings.Contains(err.Error(), "LKE's own autoscaler on") {
		t.Fatalf("pool with LKE's autoscaler: %v", err)
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
	n, err = p.Size(ctx)
	if err != nil || n != 3 {
		t.Fatalf("second Size = %d, %v", n, err)
	}
	expect(t, "two Sizes (never from linodego's cache)", api.take(), []string{"GET /v4/lke/clusters/42/pools/7", "GET /v4/lke/clusters/42/pools/7"})

	if err := p.Resize(ctx, 5); err != nil {
		t.Fatal(err)
	}
	expect(t, "Resize", api.take(), []string{`PUT /v4/lke/clusters/42/pools/7 {"count":5}`})

	err = p.Delete(ctx, []*corev1.Node{
		node("lke42-7-aaaa", "linode://1001", map[string]string{LabelPoolID: "7"}),
		node("lke42-7-cccc", "linode://1003", nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "Delete", api.take(), []string{
		"GET /v4/lke/clusters/42/pools/7",
		"DELETE /v4/lke/clusters/42/nodes/7-aaaa",
		"DELETE /v4/lke/clusters/42/nodes/7-cccc",
	})
}

func TestDeleteRefusesOtherPoolsAndUnknownNodes(t *testing.T) {
	api, p, _, err := start(t, "games", "servers")
	if err != nil {
		t.Fatal(err)
	}
	api.take()
	err = p.Delete(context.Background(), []*corev1.Node{
		node("sys", "linode://1001", map[string]string{LabelPoolID: "6"}),
		node("stranger", "linode://9999", nil),
		node("no-provider-id", "", nil),
		node("robot", "hcloud://1001", nil),
	})
	for _, want := range []string{"sys is in pool 6", "stranger (Linode 9999) is not in pool 7", "no-provider-id: providerID", `robot: providerID "hcloud://1001"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Delete error %v, want it to contain %q", err, want)
		}
	}
	expect(t, "refused Delete", api.take(), []string{"GET /v4/lke/clusters/42/pools/7"})
}

func TestRateLimitAndOutage(t *testing.T) {
	ctx := context.Background()
	api, p, w, err := start(t, "games", "servers")
	if err != nil {
		t.Fatal(err)
	}
	api.take()
	api.throttle = 1
	if err := p.Resize(ctx, 4); err != nil {
		t.Fatalf("Resize after a 429: %v", err)
	}
	expect(t, "throttled Resize", api.take(), []string{`PUT /v4/lke/clusters/42/pools/7 {"count":4}`, `PUT /v4/lke/clusters/42/pools/7 {"count":4}`})
	if !reflect.DeepEqual(w.d, []time.Duration{2 * time.Second}) {
		t.Fatalf("waited %v, want the Retry-After of 2s", w.d)
	}

	api.fail = true
	err = p.Delete(ctx, []*corev1.Node{node("lke42-7-aaaa", "linode://1001", nil)})
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
