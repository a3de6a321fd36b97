// Package providertest is the shared scaffold of the cloud providers'
// tests: a local HTTP API that checks each request's bearer token, records
// the wire ("METHOD path?query body") and can turn calls away with 429 or
// an outage, a recorder of the backoff's waits, and the checks every
// provider makes of a rate limit and an outage. Each provider's test keeps
// its own routes, so the API specifics stay beside the provider. Only tests
// import it: the product binary must not link `testing`.
package providertest

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

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/backoff"
)

// Cloud describes how a provider's API answers.
type Cloud struct {
	// Token is the bearer token every request must carry.
	Token string
	// RetryAfter (seconds) and Throttled (body) make a 429 answer.
	RetryAfter string
	Throttled  string
	// OutageStatus and OutageBody answer calls during an outage.
	OutageStatus int
	OutageBody   string
	// NotFound is the body of the 404 sent to an unexpected request.
	NotFound string
	// Routes answers a request the cloud serves and reports whether it
	// did; any other request fails the test.
	Routes func(w http.ResponseWriter, r *http.Request) bool
}

// API is a local cloud API serving a Cloud on loopback.
type API struct {
	// URL is the server's base URL, without a trailing slash.
	URL string

	t        *testing.T
	cloud    Cloud
	mu       sync.Mutex
	seen     []string
	throttle int
	fail     string
}

// Start serves c until the test ends.
func Start(t *testing.T, c Cloud) *API {
	t.Helper()
	a := &API{t: t, cloud: c}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	a.URL = srv.URL
	return a
}

// ServeHTTP checks the token, records the request, then answers 429, the
// outage or the cloud's route, in that order.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if got := r.Header.Get("Authorization"); got != "Bearer "+a.cloud.Token {
		a.t.Errorf("%s %s: Authorization %q", r.Method, r.URL, got)
	}
	body, _ := io.ReadAll(r.Body)
	line := strings.TrimSpace(r.Method + " " + r.URL.RequestURI() + " " + strings.TrimSpace(string(body)))
	a.mu.Lock()
	a.seen = append(a.seen, line)
	throttled := a.throttle > 0
	if throttled {
		a.throttle--
	}
	failing := a.fail != "" && strings.HasPrefix(r.URL.Path, a.fail)
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case throttled:
		w.Header().Set("Retry-After", a.cloud.RetryAfter)
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, a.cloud.Throttled)
	case failing:
		w.WriteHeader(a.cloud.OutageStatus)
		_, _ = io.WriteString(w, a.cloud.OutageBody)
	case a.cloud.Routes(w, r):
	default:
		a.t.Errorf("unexpected request %s", line)
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, a.cloud.NotFound)
	}
}

// Take returns the requests recorded since the last Take.
func (a *API) Take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.seen
	a.seen = nil
	return out
}

// Throttle answers the next n calls with 429 and the cloud's Retry-After.
func (a *API) Throttle(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.throttle = n
}

// FailUnder starts an outage of every path under prefix ("/" for all).
func (a *API) FailUnder(prefix string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail = prefix
}

// SentNone fails the test if a request recorded since the last Take began
// with method (e.g. no DELETE during an outage).
func (a *API) SentNone(t *testing.T, method string) {
	t.Helper()
	for _, r := range a.Take() {
		if strings.HasPrefix(r, method) {
			t.Fatalf("sent %s during an outage", r)
		}
	}
}

// Waits records the backoff's waits instead of spending them.
type Waits struct {
	mu sync.Mutex
	d  []time.Duration
}

// Sleep records d and returns at once (ctx's error if it ended).
func (w *Waits) Sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.d = append(w.d, d)
	return ctx.Err()
}

// Options put w under a provider's backoff transport.
func (w *Waits) Options() []backoff.Option {
	return []backoff.Option{backoff.WithClock(time.Now, w.Sleep)}
}

// Took returns the waits recorded since the last Reset.
func (w *Waits) Took() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.d
}

// Reset forgets the waits recorded so far.
func (w *Waits) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.d = nil
}

// Want fails the test unless the waits since the last Reset are exactly
// want (the Retry-After the API asked for).
func (w *Waits) Want(t *testing.T, want ...time.Duration) {
	t.Helper()
	if got := w.Took(); !reflect.DeepEqual(got, want) {
		t.Fatalf("waited %v, want the Retry-After %v", got, want)
	}
}

// Policy never paces a test's few calls, so only retries wait.
func Policy() backoff.Policy { return backoff.Policy{Burst: 100} }

// Expect fails the test unless got are exactly the requests want.
func Expect(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s sent\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// FailedWithoutToken fails the test unless err is an error (what failed
// against a failing API) whose text does not hold the token.
func FailedWithoutToken(t *testing.T, what string, err error, token string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s against a failing API succeeded", what)
	}
	if strings.Contains(err.Error(), token) {
		t.Fatalf("error leaks the token: %v", err)
	}
}

// Node is a node as the informer cache holds it.
func Node(name, providerID string, labels map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.NodeSpec{ProviderID: providerID}}
}

// Lifecycle is a pool's size as the API reports it and the requests Size,
// Resize and Delete must send.
type Lifecycle struct {
	Size       int
	SizeSent   []string
	Resize     int
	ResizeSent []string
	Delete     []*corev1.Node
	DeleteSent []string
}

// CheckLifecycle calls Size, Resize and Delete on p in turn and checks each
// answer and the requests each sent.
func (a *API) CheckLifecycle(t *testing.T, p provider.Provider, l Lifecycle) {
	t.Helper()
	ctx := context.Background()
	n, err := p.Size(ctx)
	if err != nil || n != l.Size {
		t.Fatalf("Size = %d, %v", n, err)
	}
	Expect(t, "Size", a.Take(), l.SizeSent)
	if err := p.Resize(ctx, l.Resize); err != nil {
		t.Fatal(err)
	}
	Expect(t, "Resize", a.Take(), l.ResizeSent)
	if err := p.Delete(ctx, l.Delete); err != nil {
		t.Fatal(err)
	}
	Expect(t, "Delete", a.Take(), l.DeleteSent)
}

// CheckRefused deletes nodes p must not delete and checks that the error
// holds each of wants and that only sent went out.
func (a *API) CheckRefused(t *testing.T, p provider.Provider, nodes []*corev1.Node, wants, sent []string) {
	t.Helper()
	err := p.Delete(context.Background(), nodes)
	for _, want := range wants {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Delete error %v, want it to contain %q", err, want)
		}
	}
	Expect(t, "refused Delete", a.Take(), sent)
}

// CheckNameErrors checks that New, run by start, names the key of an
// unknown cluster and of an unknown pool, and refuses the pool "auto" that
// the cloud's own autoscaler runs with an error holding autoscaled.
func CheckNameErrors(t *testing.T, start func(cluster, pool string) error, autoscaled string) {
	t.Helper()
	if err := start("nope", "servers"); err == nil || !strings.Contains(err.Error(), `cluster-name "nope"`) {
		t.Fatalf("unknown cluster: %v", err)
	}
	if err := start("games", "nope"); err == nil || !strings.Contains(err.Error(), `node-pool-name "nope"`) {
		t.Fatalf("unknown pool: %v", err)
	}
	if err := start("games", "auto"); err == nil || !strings.Contains(err.Error(), autoscaled) {
		t.Fatalf("pool under the cloud's own autoscaler: %v", err)
	}
}
