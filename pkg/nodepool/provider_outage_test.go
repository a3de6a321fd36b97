package nodepool

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/backoff"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/digitalocean"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/guard"
)

// outageDO is a local DigitalOcean API for one pool of two nodes that can
// be switched into an outage (every call 503) and back.
type outageDO struct {
	mu   sync.Mutex
	down bool
	seen []string
}

func (o *outageDO) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.seen = append(o.seen, r.Method+" "+r.URL.Path)
	down := o.down
	o.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	const pool = "/v2/kubernetes/clusters/c-1/node_pools/p-1"
	switch {
	case down:
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"id":"service_unavailable","message":"down"}`)
	case r.Method == http.MethodGet && r.URL.Path == "/v2/kubernetes/clusters":
		_, _ = io.WriteString(w, `{"kubernetes_clusters":[{"id":"c-1","name":"games"}],"meta":{"total":1}}`)
	case r.Method == http.MethodGet && r.URL.Path == "/v2/kubernetes/clusters/c-1/node_pools":
		_, _ = io.WriteString(w, `{"node_pools":[{"id":"p-1","name":"servers","count":2}]}`)
	case r.Method == http.MethodGet && r.URL.Path == pool:
		_, _ = io.WriteString(w, `{"node_pool":{"id":"p-1","name":"servers","count":2}}`)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, pool+"/nodes/"):
		w.WriteHeader(http.StatusAccepted)
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"id":"not_found","message":"`+r.Method+" "+r.URL.Path+`"}`)
	}
}

func (o *outageDO) setDown(down bool) { o.mu.Lock(); o.down = down; o.mu.Unlock() }

// writes are the requests that would change the pool.
func (o *outageDO) writes() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, s := range o.seen {
		if !strings.HasPrefix(s, http.MethodGet) {
			out = append(out, s)
		}
	}
	return out
}

// outageScaler is a Scaler over the guarded DigitalOcean provider (as
// NewProvider builds it) against a local API, with two empty Ready nodes
// of 4 slots each.
type outageScaler struct {
	ctx    context.Context
	api    *outageDO
	s      *Scaler
	client *fake.Clientset
	clock  *clocktesting.FakeClock
}

func newOutageScaler(t *testing.T) *outageScaler {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	api := &outageDO{}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	cfg, err := Load("", env(map[string]string{
		"CLOUD_PROVIDER": "digitalocean", "CLOUD_PROVIDER_TOKEN": "t", "CLUSTER_NAME": "games", "NODE_POOL_NAME": "servers",
		"NODE_SELECTOR": "pool=games", "SERVER_POD_LABEL_NAME": "app", "SERVER_POD_LABEL_VALUE": "game",
		"SERVER_CPU_RESOURCE_REQUEST": "1000", "BUFFER_SLOT_SIZE": "2", "MINIMUM_NODE_POOL_SIZE": "1", "MAXIMUM_NODE_POOL_SIZE": "3",
		"EMPTY_NODE_EXPIRATION_SEC": "60", "RESIZE_COOLDOWN_SEC": "0",
	}))
	if err != nil {
		t.Fatal(err)
	}
	noWait := backoff.WithClock(time.Now, func(ctx context.Context, _ time.Duration) error { return ctx.Err() })
	do, err := digitalocean.New(ctx, digitalocean.Config{Token: "t", ClusterName: "games", NodePoolName: "servers",
		BaseURL: srv.URL + "/", BackoffOptions: []backoff.Option{noWait}})
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	for _, name := range []string{"n-a", "n-b"} {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
				"pool": "games", digitalocean.LabelNodeID: "id-" + name, digitalocean.LabelNodePoolID: "p-1"}},
			Status: corev1.NodeStatus{
				Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110")},
				Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			},
		}
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	clock := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s, err := New(Options{Config: cfg, Client: client, Provider: guard.Wrap(do), Clock: clock, Recorder: record.NewFakeRecorder(1000)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return &outageScaler{ctx: ctx, api: api, s: s, client: client, clock: clock}
}

// TestProviderOutageHoldsThePool runs the scaler over the DigitalOcean
// provider (guarded, as NewProvider builds it) against a local API. An
// empty surplus node is cordoned while the API is up; then the API goes
// down past the node's expiry: every pass that wants the node deleted
// fails with the provider's error and sends no DELETE. When the API is
// back, exactly that node is deleted.
func TestProviderOutageHoldsThePool(t *testing.T) {
	o := newOutageScaler(t)
	ctx, api, s, clock := o.ctx, o.api, o.s, o.clock

	// Up: 8 free slots against 2 wanted, so one node is cordoned.
	var cordoned string
	deadline := time.Now().Add(10 * time.Second)
	for cordoned == "" {
		d, err := s.Pass(ctx)
		if err != nil {
			t.Fatalf("pass with the API up: %v", err)
		}
		if len(d.Cordon) == 1 {
			cordoned = d.Cordon[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cordon; last decision %+v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Down, well past the expiry: the scaler keeps trying to delete the
	// node through the provider, and every such pass fails with the
	// provider's error (which the controller shows as a condition and an
	// event) and deletes nothing.
	api.setDown(true)
	held := 0
	deadline = time.Now().Add(10 * time.Second)
	for held < 3 {
		clock.Step(2 * time.Minute)
		d, err := s.Pass(ctx)
		if err != nil {
			if !strings.Contains(err.Error(), "holding the pool") || !strings.Contains(err.Error(), "503") {
				t.Fatalf("pass during the outage failed with %v, want the guard's hold with the API's 503", err)
			}
			held++
		}
		if time.Now().After(deadline) {
			t.Fatalf("the scaler never tried to delete the expired node during the outage; last decision %+v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if w := api.writes(); len(w) != 0 {
		t.Fatalf("during the outage the provider was sent %q", w)
	}

	// Up again: the chosen node, and only it, is deleted.
	api.setDown(false)
	deadline = time.Now().Add(10 * time.Second)
	for len(api.writes()) == 0 {
		clock.Step(time.Minute)
		_, _ = s.Pass(ctx)
		if time.Now().After(deadline) {
			t.Fatal("nothing deleted after the API came back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	want := "DELETE /v2/kubernetes/clusters/c-1/node_pools/p-1/nodes/id-" + cordoned
	if w := api.writes(); len(w) != 1 || w[0] != want {
		t.Fatalf("after the outage the provider was sent %q, want [%s]", w, want)
	}
}

// TestProviderOutageHoldsGrowth: server pods wait for room while the API
// is down. The scaler wants to grow, the guard cannot read the pool's
// size, so nothing is ordered (an order from a stale count could even
// lower the pool); when the API is back the pool grows.
func TestProviderOutageHoldsGrowth(t *testing.T) {
	o := newOutageScaler(t)
	o.api.setDown(true)
	for i := range 9 {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("gs-%d", i), Namespace: "default", Labels: map[string]string{"app": "game"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "gs", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending},
		}
		if _, err := o.client.CoreV1().Pods("default").Create(o.ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	held := 0
	deadline := time.Now().Add(10 * time.Second)
	for held < 3 {
		o.clock.Step(time.Minute)
		d, err := o.s.Pass(o.ctx)
		if err != nil {
			if !strings.Contains(err.Error(), "holding the pool") || !strings.Contains(err.Error(), "not resized") {
				t.Fatalf("pass during the outage failed with %v, want the guard's hold", err)
			}
			held++
		}
		if time.Now().After(deadline) {
			t.Fatalf("the scaler never tried to grow during the outage; last decision %+v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if w := o.api.writes(); len(w) != 0 {
		t.Fatalf("during the outage the provider was sent %q", w)
	}
	o.api.setDown(false)
	deadline = time.Now().Add(10 * time.Second)
	for len(o.api.writes()) == 0 {
		o.clock.Step(time.Minute)
		_, _ = o.s.Pass(o.ctx)
		if time.Now().After(deadline) {
			t.Fatal("no growth after the API came back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if w := o.api.writes(); len(w) != 1 || w[0] != "PUT /v2/kubernetes/clusters/c-1/node_pools/p-1" {
		t.Fatalf("after the outage the provider was sent %q, want one PUT of the pool", w)
	}
}
