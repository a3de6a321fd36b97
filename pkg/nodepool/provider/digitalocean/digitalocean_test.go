package digitalocean

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/backoff"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/providertest"
)

const token = "dop_v1_test_token"

// routes answer like the DigitalOcean API at base, so the test checks what
// godo sends on the wire, not our own structs.
func routes(base *string) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		base := *base
		const pools = "/v2/kubernetes/clusters/c-2/node_pools"
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/v2/kubernetes/clusters" && r.URL.Query().Get("page") == "1":
			fmt.Fprintf(w, `{"kubernetes_clusters":[{"id":"c-1","name":"other"}],"links":{"pages":{"next":"%s/v2/kubernetes/clusters?page=2&per_page=200","last":"%s/v2/kubernetes/clusters?page=2&per_page=200"}},"meta":{"total":2}}`, base, base)
		case r.Method == http.MethodGet && r.URL.Path == "/v2/kubernetes/clusters":
			fmt.Fprintf(w, `{"kubernetes_clusters":[{"id":"c-2","name":"games"}],"links":{"pages":{"prev":"%s/v2/kubernetes/clusters?page=1&per_page=200","first":"%s/v2/kubernetes/clusters?page=1&per_page=200"}},"meta":{"total":2}}`, base, base)
		case r.Method == http.MethodGet && r.URL.Path == pools:
			_, _ = io.WriteString(w, `{"node_pools":[{"id":"p-0","name":"system","count":1},{"id":"p-9","name":"servers","count":3}]}`)
		case r.Method == http.MethodGet && r.URL.Path == pools+"/p-9":
			_, _ = io.WriteString(w, `{"node_pool":{"id":"p-9","name":"servers","count":3,"nodes":[{"id":"n-unlabelled","name":"servers-abc"}]}}`)
		case r.Method == http.MethodPut && r.URL.Path == pools+"/p-9":
			_, _ = io.WriteString(w, `{"node_pool":{"id":"p-9","name":"servers","count":5}}`)
		case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, pools+"/p-9/nodes/"):
			w.WriteHeader(http.StatusAccepted)
		default:
			return false
		}
		return true
	}
}

// cloud answers 429 with Retry-After: 3 and outages with 500.
func cloud(base *string) providertest.Cloud {
	return providertest.Cloud{
		Token:      token,
		RetryAfter: "3", Throttled: `{"id":"too_many_requests","message":"API Rate limit exceeded."}`,
		OutageStatus: http.StatusInternalServerError, OutageBody: `{"id":"server_error","message":"boom"}`,
		Routes: routes(base),
	}
}

func start(t *testing.T) (*providertest.API, *Provider) {
	api, p, _ := startWaits(t)
	return api, p
}

func startWaits(t *testing.T) (*providertest.API, *Provider, *providertest.Waits) {
	t.Helper()
	var base string
	api := providertest.Start(t, cloud(&base))
	base = api.URL
	w := &providertest.Waits{}
	p, err := New(context.Background(), Config{Token: token, ClusterName: "games", NodePoolName: "servers", BaseURL: api.URL + "/",
		Backoff: providertest.Policy(), BackoffOptions: w.Options()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return api, p, w
}

func TestNewFindsClusterAndPoolAcrossPages(t *testing.T) {
	api, p := start(t)
	providertest.Expect(t, "New", api.Take(), []string{
		"GET /v2/kubernetes/clusters?page=1&per_page=200",
		"GET /v2/kubernetes/clusters?page=2&per_page=200",
		"GET /v2/kubernetes/clusters/c-2/node_pools?page=1&per_page=200",
	})
	if p.clusterID != "c-2" || p.poolID != "p-9" {
		t.Fatalf("ids = %s %s", p.clusterID, p.poolID)
	}
}

func TestSizeResizeDelete(t *testing.T) {
	api, p := start(t)
	api.Take()
	api.CheckLifecycle(t, p, providertest.Lifecycle{
		Size: 3, SizeSent: []string{"GET /v2/kubernetes/clusters/c-2/node_pools/p-9"},
		Resize: 5, ResizeSent: []string{`PUT /v2/kubernetes/clusters/c-2/node_pools/p-9 {"name":"servers","count":5}`},
		Delete: []*corev1.Node{
			node("servers-xyz", map[string]string{LabelNodeID: "n-1", LabelNodePoolID: "p-9"}), // labelled
			node("servers-abc", nil), // unlabelled: found in the pool's node list
		},
		DeleteSent: []string{
			"DELETE /v2/kubernetes/clusters/c-2/node_pools/p-9/nodes/n-1",
			"GET /v2/kubernetes/clusters/c-2/node_pools/p-9",
			"DELETE /v2/kubernetes/clusters/c-2/node_pools/p-9/nodes/n-unlabelled",
		},
	})
}

func TestDeleteRefusesOtherPoolsAndUnknownNodes(t *testing.T) {
	api, p := start(t)
	api.Take()
	err := p.Delete(context.Background(), []*corev1.Node{
		node("sys", map[string]string{LabelNodeID: "n-7", LabelNodePoolID: "p-0"}),
		node("stranger", nil),
	})
	if err == nil || !strings.Contains(err.Error(), "not deleting it") || !strings.Contains(err.Error(), "stranger") {
		t.Fatalf("Delete error = %v", err)
	}
	for _, r := range api.Take() {
		if strings.HasPrefix(r, "DELETE") {
			t.Fatalf("sent %s", r)
		}
	}
}

func TestErrorsNeverCarryTheToken(t *testing.T) {
	api, p := start(t)
	api.FailUnder("/v2/kubernetes/clusters/c-2/node_pools/p-9")
	err := p.Resize(context.Background(), 4)
	providertest.FailedWithoutToken(t, "Resize", err, token)
	if _, err := New(context.Background(), Config{Token: token, ClusterName: "nope", NodePoolName: "servers", BaseURL: api.URL + "/"}); err == nil || !strings.Contains(err.Error(), `cluster-name "nope"`) {
		t.Fatalf("unknown cluster: %v", err)
	}
}

func TestRateLimitedCallsWaitAndRetry(t *testing.T) {
	api, p, w := startWaits(t)
	api.Take()
	w.Reset()
	api.Throttle(2)
	if err := p.Resize(context.Background(), 5); err != nil {
		t.Fatalf("Resize after two 429s: %v", err)
	}
	body := `PUT /v2/kubernetes/clusters/c-2/node_pools/p-9 {"name":"servers","count":5}`
	providertest.Expect(t, "Resize", api.Take(), []string{body, body, body})
	w.Want(t, 3*time.Second, 3*time.Second)
}

func TestOutageFailsAfterBoundedRetries(t *testing.T) {
	api, p, w := startWaits(t)
	api.Take()
	w.Reset()
	api.FailUnder("/v2/kubernetes/clusters/c-2/node_pools/p-9")
	if _, err := p.Size(context.Background()); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("Size during an outage: %v", err)
	}
	if got := api.Take(); len(got) != backoff.Default.Attempts {
		t.Fatalf("Size sent %d requests during an outage, want %d: %q", len(got), backoff.Default.Attempts, got)
	}
	if got := w.Took(); len(got) != backoff.Default.Attempts-1 {
		t.Fatalf("waits %v", got)
	}
}

func node(name string, labels map[string]string) *corev1.Node {
	return providertest.Node(name, "", labels)
}
