package hetzner

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/providertest"
)

const token = "hcloud-test-token-0123456789"

// routes answer like the Hetzner Cloud API v1, so the test checks what
// hcloud-go sends on the wire. Pool "servers" has servers 11 and 12 (12
// spread over a second page) and server 13, which is being deleted and so
// no longer counts. Created servers get IDs 101, 102...
func routes() func(w http.ResponseWriter, r *http.Request) bool {
	var created atomic.Int32
	return func(w http.ResponseWriter, r *http.Request) bool {
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
			id := 100 + int(created.Add(1))
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"server":%s,"action":{"id":%d,"command":"create_server","status":"running"},"next_actions":[],"root_password":null}`, server(id, "new", "initializing"), id)
		case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v1/servers/"):
			_, _ = io.WriteString(w, `{"action":{"id":500,"command":"delete_server","status":"running"}}`)
		default:
			return false
		}
		return true
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

func start(t *testing.T, edit func(*Config)) (*providertest.API, *Provider, *providertest.Waits, error) {
	t.Helper()
	api := providertest.Start(t, providertest.Cloud{
		Token:      token,
		RetryAfter: "4", Throttled: `{"error":{"code":"rate_limit_exceeded","message":"limit of 3600 requests per hour reached"}}`,
		OutageStatus: http.StatusServiceUnavailable, OutageBody: `{"error":{"code":"service_error","message":"unavailable"}}`,
		NotFound: `{"error":{"code":"not_found","message":"not found"}}`,
		Routes:   routes(),
	})
	w := &providertest.Waits{}
	names := 0
	cfg := Config{
		Token: token, Pool: "servers", ServerType: "cpx31", Image: "ubuntu-24.04", Location: "fsn1",
		UserData: "#cloud-config\nruncmd: [kubeadm join]\n", BaseURL: api.URL + "/v1",
		Backoff: providertest.Policy(), BackoffOptions: w.Options(),
		NewName: func() string { names++; return fmt.Sprintf("servers-%02d", names) },
	}
	if edit != nil {
		edit(&cfg)
	}
	p, err := New(context.Background(), cfg)
	return api, p, w, err
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
	providertest.Expect(t, "New", api.Take(), []string{"GET /v1/networks?name=k8s", "GET /v1/ssh_keys?name=ops"})
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
	api.Take()

	n, err := p.Size(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Size = %d, %v (want 2: a deleting server does not count)", n, err)
	}
	providertest.Expect(t, "Size", api.Take(), []string{list1, list2})

	if err := p.Resize(ctx, 4); err != nil {
		t.Fatal(err)
	}
	create := func(name string) string {
		return `POST /v1/servers {"name":"` + name + `","server_type":"cpx31","image":"ubuntu-24.04","ssh_keys":[88],"location":"fsn1",` +
			`"user_data":"#cloud-config\nruncmd: [kubeadm join]\n","start_after_create":true,"labels":{"hcloud/node-group":"servers"},"networks":[77]}`
	}
	providertest.Expect(t, "Resize 2 → 4", api.Take(), []string{list1, list2, create("servers-01"), create("servers-02")})

	err = p.Delete(ctx, []*corev1.Node{
		node("servers-0a0a0a0a", "hcloud://11"),
		node("servers-0b0b0b0b", ""), // not initialised by the cloud controller yet: found by name
	})
	if err != nil {
		t.Fatal(err)
	}
	providertest.Expect(t, "Delete", api.Take(), []string{list1, list2, "DELETE /v1/servers/11", "DELETE /v1/servers/12"})
}

func TestImageByID(t *testing.T) {
	api, p, _, err := start(t, func(c *Config) { c.Image, c.Location = "15512617", "" })
	if err != nil {
		t.Fatal(err)
	}
	if err := p.create(context.Background()); err != nil {
		t.Fatal(err)
	}
	providertest.Expect(t, "create", api.Take(), []string{`POST /v1/servers {"name":"servers-01","server_type":"cpx31","image":15512617,` +
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
	providertest.Expect(t, "refused Delete", api.Take(), []string{list1, list2})
}

func TestRateLimitAndOutage(t *testing.T) {
	ctx := context.Background()
	api, p, w, err := start(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	api.Throttle(1)
	if err := p.create(ctx); err != nil {
		t.Fatalf("create after a 429: %v", err)
	}
	if got := api.Take(); len(got) != 2 || got[0] != got[1] || !strings.HasPrefix(got[0], "POST /v1/servers ") {
		t.Fatalf("throttled create sent %q, want the same POST twice", got)
	}
	w.Want(t, 4*time.Second)

	api.FailUnder("/")
	if err := p.create(ctx); err == nil {
		t.Fatal("create during an outage succeeded")
	}
	if got := api.Take(); len(got) != 1 {
		t.Fatalf("a create was repeated after a 503 (it may have happened): %q", got)
	}
	err = p.Delete(ctx, []*corev1.Node{node("servers-0a0a0a0a", "hcloud://11")})
	providertest.FailedWithoutToken(t, "Delete", err, token)
	api.SentNone(t, "DELETE")
}

func node(name, providerID string) *corev1.Node {
	return providertest.Node(name, providerID, nil)
}
