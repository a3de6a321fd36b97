package linode

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/providertest"
)

const token = "linode-test-token"

// routes answer like the Linode API v4, so the test checks what linodego
// sends on the wire.
func routes(w http.ResponseWriter, r *http.Request) bool {
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
		return false
	}
	return true
}

func start(t *testing.T, cluster, pool string) (*providertest.API, *Provider, *providertest.Waits, error) {
	t.Helper()
	api := providertest.Start(t, providertest.Cloud{
		Token:      token,
		RetryAfter: "2", Throttled: `{"errors":[{"reason":"Too many requests"}]}`,
		OutageStatus: http.StatusInternalServerError, OutageBody: `{"errors":[{"reason":"Internal Server Error"}]}`,
		NotFound: `{"errors":[{"reason":"Not found"}]}`,
		Routes:   routes,
	})
	w := &providertest.Waits{}
	p, err := New(context.Background(), Config{
		Token: token, ClusterName: cluster, NodePoolName: pool, BaseURL: api.URL + "/v4",
		Backoff: providertest.Policy(), BackoffOptions: w.Options(),
	})
	return api, p, w, err
}

func TestNewFindsClusterAndPool(t *testing.T) {
	for _, c := range []struct{ cluster, pool string }{{"games", "servers"}, {"42", "7"}} {
		api, p, _, err := start(t, c.cluster, c.pool)
		if err != nil {
			t.Fatalf("New(%s, %s): %v", c.cluster, c.pool, err)
		}
		providertest.Expect(t, "New", api.Take(), []string{
			"GET /v4/lke/clusters?page=1",
			"GET /v4/lke/clusters?page=2",
			"GET /v4/lke/clusters/42/pools?page=1",
		})
		if p.clusterID != 42 || p.poolID != 7 {
			t.Fatalf("ids = %d %d", p.clusterID, p.poolID)
		}
	}
	providertest.CheckNameErrors(t, func(cluster, pool string) error {
		_, _, _, err := start(t, cluster, pool)
		return err
	}, "LKE's own autoscaler on")
}

func TestSizeResizeDelete(t *testing.T) {
	api, p, _, err := start(t, "games", "servers")
	if err != nil {
		t.Fatal(err)
	}
	api.Take()

	// A first Size here and a second in the lifecycle: each must be a GET,
	// never an answer from linodego's cache.
	n, err := p.Size(context.Background())
	if err != nil || n != 3 {
		t.Fatalf("Size = %d, %v", n, err)
	}
	providertest.Expect(t, "first Size", api.Take(), []string{"GET /v4/lke/clusters/42/pools/7"})
	api.CheckLifecycle(t, p, providertest.Lifecycle{
		Size: 3, SizeSent: []string{"GET /v4/lke/clusters/42/pools/7"},
		Resize: 5, ResizeSent: []string{`PUT /v4/lke/clusters/42/pools/7 {"count":5}`},
		Delete: []*corev1.Node{
			providertest.Node("lke42-7-aaaa", "linode://1001", map[string]string{LabelPoolID: "7"}),
			providertest.Node("lke42-7-cccc", "linode://1003", nil),
		},
		DeleteSent: []string{
			"GET /v4/lke/clusters/42/pools/7",
			"DELETE /v4/lke/clusters/42/nodes/7-aaaa",
			"DELETE /v4/lke/clusters/42/nodes/7-cccc",
		},
	})
}

func TestDeleteRefusesOtherPoolsAndUnknownNodes(t *testing.T) {
	api, p, _, err := start(t, "games", "servers")
	if err != nil {
		t.Fatal(err)
	}
	api.Take()
	api.CheckRefused(t, p, []*corev1.Node{
		providertest.Node("sys", "linode://1001", map[string]string{LabelPoolID: "6"}),
		providertest.Node("stranger", "linode://9999", nil),
		providertest.Node("no-provider-id", "", nil),
		providertest.Node("robot", "hcloud://1001", nil),
	}, []string{"sys is in pool 6", "stranger (Linode 9999) is not in pool 7", "no-provider-id: providerID", `robot: providerID "hcloud://1001"`},
		[]string{"GET /v4/lke/clusters/42/pools/7"})
}

func TestRateLimitAndOutage(t *testing.T) {
	ctx := context.Background()
	api, p, w, err := start(t, "games", "servers")
	if err != nil {
		t.Fatal(err)
	}
	api.Take()
	api.Throttle(1)
	if err := p.Resize(ctx, 4); err != nil {
		t.Fatalf("Resize after a 429: %v", err)
	}
	providertest.Expect(t, "throttled Resize", api.Take(), []string{`PUT /v4/lke/clusters/42/pools/7 {"count":4}`, `PUT /v4/lke/clusters/42/pools/7 {"count":4}`})
	w.Want(t, 2*time.Second)

	api.FailUnder("/")
	err = p.Delete(ctx, []*corev1.Node{providertest.Node("lke42-7-aaaa", "linode://1001", nil)})
	providertest.FailedWithoutToken(t, "Delete", err, token)
	api.SentNone(t, "DELETE")
}
