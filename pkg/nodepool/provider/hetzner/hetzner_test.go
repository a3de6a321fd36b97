package hetzner

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

const token = "hcloud-test-token-0123456789"

// fakeHcloud answers like the Hetzner Cloud API v1 and records every
// request hcloud-go sends, so the test checks the wire.
type fakeHcloud struct {
	t        *testing.T
	mu       sync.Mutex
	seen     []string // "METHOD path?query body"
	fail     bool     // answer everything with 503
	throttle int      // answer this many calls with 429 first
	created  int
}

// Pool "servers" has servers 11 and 12 (12 spread over a second page) and
// server 13, which is being deleted and so no longer counts.
func (f *fakeHcloud) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
		w.Header().Set("Retry-After", "4")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":{"code":"rate_limit_exceeded","message":"limit of 3600 requests per hour reached"}}`)
		return
	case f.fail:
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":{"code":"service_error","message":"unavailable"}}`)
		return
	}
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/servers" && q.Get("label_selector") == LabelPool+"=servers" && q.Get("page") == "1":
		_, _ = io.WriteString(w, `{"servers":[`+server(11, "servers-0a0a0a0a", "running")+`,`+server(13, "servers-dead", "deleting")+`],`+page(1, 2)+`}`)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/servers" && q.Get("label_selector") == LabelPool+"=servers" && q.Get("page") == "2":
		_, _ = io.WriteString(w, `{"servers":[`+server(12, "servers-0b0b0b0b", "initializing")+`],`+page(2, 2)+`}`)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/networks" && q.Get("name") == "k8s":
		_, _ = io.WriteString(w, `{"networks":[{"id":77,"name":"k8s","ip_range":"10.0.0.0/16"}],`+page(1, 1)+`}`)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/ssh_keys" && q.Get("name") == "ops":
		_, _ = io.WriteString(w, `{"ssh_keys":[{"id":88,"name":"ops"}],`+page(1, 1)+`}`)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/servers":
		f.mu.Lock()
		f.created++
		id := 100 + f.created
		f.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"server":%s,"action":{"id":%d,"command":"create_server","status":"running"},"next_actions":[],"root_password":null}`, server(id, "new", "initializing"), id)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v1/servers/"):
		_, _ = io.WriteString(w, `{"action":{"id":500,"command":"delete_server","status":"running"}}`)
	default:
		f.t.Errorf("unexpected request %s", line)
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":{"code":"not_found","message":"not found"}}`)
	}
}

func server(id int, name, status string) string {
	return fmt.Sprintf(`{"id":%d,"name":%q,"status":%q,"labels":{%q:"servers"}}`, id, name, status, LabelPool)
}

func page(n, last int) string {
	next := "null"
	if n < last {
		next = fmt.Sprint(n + 1)
	}
	return fmt.Sprintf(`"meta":{"pagination":{"page":%d,"per_page":50,"previous_page":null,"next_page":%s,"last_page":%d,"total_entries":3}}`, n, next, last)
}

func (f *fakeHcloud) take() []string {
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

func start(t *testing.T, edit func(*Config)) (*fakeHcloud, *Provider, *waits, error) {
	t.Helper()
	api := &fakeHcloud{t: t}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	w := &waits{}
	names := 0
	cfg := Config{
		Token: token, Pool: "servers", ServerType: "cpx31", Image: "ubuntu-24.04", Location: "fsn1",
		UserData: "#cloud-config\nruncmd: [kubeadm join]\n", BaseURL: srv.URL + "/v1",
		Backoff: backoff.Policy{Burst: 100}, BackoffOptions: []backoff.Option{backoff.WithClock(time.Now, w.sleep)},
		NewName: func() string { names++; return fmt.Sprintf("servers-%02d", names) },
	}
	if edit != nil {
		edit(&cfg)
	}
	p, err := New(context.Background(), cfg)
	return api, p, w, err
}

func expect(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s sent\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

const (
	list1 = "GET /v1/servers?label_selector=hcloud%2Fnode-group%3Dservers&page=1&per_page=50"
	list2 = "GET /v1/servers?label_selector=hcloud%2Fnode-group%3Dservers&page=2&per_page=50"
)

func TestNewChecksConfigAndResolvesNames(t *testing.T) {
	if _, _, _, err := start(t, func(c *Config) { c.ServerType, c.UserData = "", " " }); err == nil ||
		!strings.Contains(err.Error(), "required: cloud-init user data, server type") {
		t.Fatalf("missing keys: %v", err)
	}
	api, p, _, err := start(t, func(c *Config) { c.Network, c.SSHKey = "k8s", "ops" })
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "New", api.take(), []string{"GET /v1/networks?name=k8s", "GET /v1/ssh_keys?name=ops"})
	if p.network.ID != 77 || p.sshKey.ID != 88 {
		t.Fatalf("network %d, ssh key %d", p.network.ID, p.sshKey.ID)
	}
}

func TestSizeResizeDelete(t *testing.T) {
	ctx := context.Background()
	api, p, _, err := start(t, func(c *Config) { c.Network, c.SSHKey = "k8s", "ops" })
	if err != nil {
		t.Fatal(err)
	}
	api.take()

	n, err := p.Size(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Size = %d, %v (want 2: a deleting server does not count)", n, err)
	}
	expect(t, "Size", api.take(), []string{list1, list2})

	if err := p.Resize(ctx, 4); err != nil {
		t.Fatal(err)
	}
	create := func(name string) string {
		return `POST /v1/servers {"name":"` + name + `","server_type":"cpx31","image":"ubuntu-24.04","ssh_keys":[88],"location":"fsn1",` +
			`"user_data":"#cloud-config\nruncmd: [kubeadm join]\n","start_after_create":true,"labels":{"hcloud/node-group":"servers"},"networks":[77]}`
	}
	expect(t, "Resize 2 → 4", api.take(), []string{list1, list2, create("servers-01"), create("servers-02")})

	err = p.Delete(ctx, []*corev1.Node{
		node("servers-0a0a0a0a", "hcloud://11"),
		node("servers-0b0b0b0b", ""), // not initialised by the cloud controller yet: found by name
	})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "Delete", api.take(), []string{list1, list2, "DELETE /v1/servers/11", "DELETE /v1/servers/12"})
}

func TestImageByID(t *testing.T) {
	api, p, _, err := start(t, func(c *Config) { c.Image, c.Location = "15512617", "" })
	if err != nil {
		t.Fatal(err)
	}
	if err := p.create(context.Background()); err != nil {
		t.Fatal(err)
	}
	expect(t, "create", api.take(), []string{`POST /v1/servers {"name":"servers-01","server_type":"cpx31","image":15512617,` +
		`"user_data":"#cloud-config\nruncmd: [kubeadm join]\n","start_after_create":true,"labels":{"hcloud/node-group":"servers"}}`})
}

func TestDeleteRefusesServersOutsideThePool(t *testing.T) {
	api, p, _, err := start(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Delete(context.Background(), []*corev1.Node{
		node("control-plane", "hcloud://1"),
		node("dying", "hcloud://13"),
		node("stranger", ""),
		node("robot", "hrobot://11"),
	})
	for _, want := range []string{
		"control-plane (server 1) has no label hcloud/node-group=servers",
		"dying (server 13) has no label",
		"stranger has no providerID and no server of pool servers has its name",
		`robot: providerID "hrobot://11"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Delete error %v, want it to contain %q", err, want)
		}
	}
	expect(t, "refused Delete", api.take(), []string{list1, list2})
}

func TestRateLimitAndOutage(t *testing.T) {
	ctx := context.Background()
	api, p, w, err := start(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	api.throttle = 1
	if err := p.create(ctx); err != nil {
		t.Fatalf("create after a 429: %v", err)
	}
	if got := api.take(); len(got) != 2 || got[0] != got[1] || !strings.HasPrefix(got[0], "POST /v1/servers ") {
		t.Fatalf("throttled create sent %q, want the same POST twice", got)
	}
	if !reflect.DeepEqual(w.d, []time.Duration{4 * time.Second}) {
		t.Fatalf("waited %v, want the Retry-After of 4s", w.d)
	}

	api.fail = true
	if err := p.create(ctx); err == nil {
		t.Fatal("create during an outage succeeded")
	}
	if got := api.take(); len(got) != 1 {
		t.Fatalf("a create was repeated after a 503 (it may have happened): %q", got)
	}
	err = p.Delete(ctx, []*corev1.Node{node("servers-0a0a0a0a", "hcloud://11")})
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

func node(name, providerID string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{ProviderID: providerID}}
}
