package vultr

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/providertest"
)

const token = "vultr-test-api-key"

const (
	cluster = "/v2/kubernetes/clusters/vke-2"
	pool    = `{"id":"np-9","label":"servers","node_quantity":3,"nodes":[` +
		`{"id":"inst-a","label":"servers-a","status":"active"},{"id":"inst-b","label":"servers-b","status":"active"}]}`
)

// routes answer like the Vultr API v2, so the test checks what govultr
// sends on the wire.
func routes(w http.ResponseWriter, r *http.Request) bool {
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
		return false
	}
	return true
}

func start(t *testing.T, clusterName, poolName string) (*providertest.API, *Provider, *providertest.Waits, error) {
	t.Helper()
	api := providertest.Start(t, providertest.Cloud{
		Token:      token,
		RetryAfter: "1", Throttled: `{"error":"Rate limit reached","status":429}`,
		OutageStatus: http.StatusServiceUnavailable, OutageBody: `{"error":"Service Unavailable","status":503}`,
		NotFound: `{"error":"not found","status":404}`,
		Routes:   routes,
	})
	w := &providertest.Waits{}
	p, err := New(context.Background(), Config{
		Token: token, ClusterName: clusterName, NodePoolName: poolName, BaseURL: api.URL,
		Backoff: providertest.Policy(), BackoffOptions: w.Options(),
	})
	return api, p, w, err
}

func TestNewFindsClusterAndPoolAcrossPages(t *testing.T) {
	for _, c := range []struct{ cluster, pool string }{{"games", "servers"}, {"vke-2", "np-9"}} {
		api, p, _, err := start(t, c.cluster, c.pool)
		if err != nil {
			t.Fatalf("New(%s, %s): %v", c.cluster, c.pool, err)
		}
		providertest.Expect(t, "New", api.Take(), []string{
			"GET /v2/kubernetes/clusters?per_page=100",
			"GET /v2/kubernetes/clusters?cursor=bmV4dA%3D%3D&per_page=100",
			"GET /v2/kubernetes/clusters/vke-2/node-pools?per_page=100",
		})
		if p.clusterID != "vke-2" || p.poolID != "np-9" {
			t.Fatalf("ids = %s %s", p.clusterID, p.poolID)
		}
	}
	providertest.CheckNameErrors(t, func(cluster, pool string) error {
		_, _, _, err := start(t, cluster, pool)
		return err
	}, "VKE's own auto scaler on")
}

func TestSizeResizeDelete(t *testing.T) {
	api, p, _, err := start(t, "games", "servers")
	if err != nil {
		t.Fatal(err)
	}
	api.Take()
	api.CheckLifecycle(t, p, providertest.Lifecycle{
		Size: 3, SizeSent: []string{"GET /v2/kubernetes/clusters/vke-2/node-pools/np-9"},
		Resize: 5, ResizeSent: []string{`PATCH /v2/kubernetes/clusters/vke-2/node-pools/np-9 {"node_quantity":5}`},
		Delete: []*corev1.Node{
			providertest.Node("servers-a", "vultr://inst-a", map[string]string{LabelNodeID: "inst-a"}),
			providertest.Node("servers-b", "vultr://inst-b", nil),
		},
		DeleteSent: []string{
			"GET /v2/kubernetes/clusters/vke-2/node-pools/np-9",
			"DELETE /v2/kubernetes/clusters/vke-2/node-pools/np-9/nodes/inst-a",
			"DELETE /v2/kubernetes/clusters/vke-2/node-pools/np-9/nodes/inst-b",
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
		providertest.Node("sys", "vultr://inst-sys", nil),
		providertest.Node("no-id", "", nil),
	}, []string{"sys (VKE node inst-sys) is not in pool np-9", "no-id has no vke.vultr.com/node-id label"},
		[]string{"GET /v2/kubernetes/clusters/vke-2/node-pools/np-9"})
}

func TestRateLimitAndOutage(t *testing.T) {
	ctx := context.Background()
	api, p, w, err := start(t, "games", "servers")
	if err != nil {
		t.Fatal(err)
	}
	api.Take()
	api.Throttle(1)
	n, err := p.Size(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Size after a 429 = %d, %v", n, err)
	}
	providertest.Expect(t, "throttled Size", api.Take(), []string{"GET /v2/kubernetes/clusters/vke-2/node-pools/np-9", "GET /v2/kubernetes/clusters/vke-2/node-pools/np-9"})
	w.Want(t, time.Second)

	api.FailUnder("/")
	err = p.Delete(ctx, []*corev1.Node{providertest.Node("servers-a", "vultr://inst-a", nil)})
	providertest.FailedWithoutToken(t, "Delete", err, token)
	api.SentNone(t, "DELETE")
}
