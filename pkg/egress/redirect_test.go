package egress

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// seen records the credential headers each request to a server carried.
type seen struct {
	mu   sync.Mutex
	auth []string
}

func (s *seen) add(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auth = append(s.auth, r.Header.Get("Authorization")+"|"+r.Header.Get("Cookie"))
}

func (s *seen) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auth...)
}

// TestRedirectStripsCredentialsOffOrigin: the bearer token (and a cookie)
// set for one origin follow a redirect on that origin, and never one to
// another port of the same host, nor to another name of it. net/http alone
// compares host names only, so the other-port case is the one this guards.
func TestRedirectStripsCredentialsOffOrigin(t *testing.T) {
	var origin, other seen
	otherSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		other.add(r)
		if r.URL.Path == "/back" {
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(otherSrv.Close)
	originSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin.add(r)
		if to := r.URL.Query().Get("to"); to != "" && r.URL.Path == "/go" {
			http.Redirect(w, r, to, http.StatusFound)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(originSrv.Close)
	ou, _ := url.Parse(originSrv.URL)
	localhostURL := "http://localhost:" + ou.Port()
	const creds = "Bearer s3cret|session=s3cret"
	cases := []struct {
		name       string
		to         string
		wantOrigin []string // credential headers seen by the origin server, per request
		wantOther  []string
	}{
		{name: "same origin keeps them", to: "/final", wantOrigin: []string{creds, creds}},
		{name: "other port of the same host", to: otherSrv.URL + "/final", wantOrigin: []string{creds}, wantOther: []string{"|"}},
		{name: "other name of the same address and port", to: localhostURL + "/final", wantOrigin: []string{creds, "|"}},
		{name: "back to the origin through another port", to: otherSrv.URL + "/back?to=" + url.QueryEscape(originSrv.URL+"/final"),
			wantOrigin: []string{creds, creds}, wantOther: []string{"|"}},
	}
	p := mustPolicy(t, Config{Allow: []string{"127.0.0.1", "::1"}})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			origin, other = seen{}, seen{}
			req, err := http.NewRequest(http.MethodGet, originSrv.URL+"/go?to="+url.QueryEscape(tc.to), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer s3cret")
			req.Header.Set("Cookie", "session=s3cret")
			resp, err := p.HTTPClient(0, nil).Do(req)
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			_ = resp.Body.Close()
			if got := origin.get(); strings.Join(got, ",") != strings.Join(tc.wantOrigin, ",") {
				t.Errorf("origin server saw %q, want %q", got, tc.wantOrigin)
			}
			if got := other.get(); strings.Join(got, ",") != strings.Join(tc.wantOther, ",") {
				t.Errorf("other-port server saw %q, want %q", got, tc.wantOther)
			}
		})
	}
}

// TestSameOrigin: scheme, host and port (default ports filled in) make an
// origin; a subdomain or a scheme change is another one.
func TestSameOrigin(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"http://h:8080/a", "http://h:8080/b?x=1", true},
		{"http://h/a", "http://h:80/b", true},
		{"https://H.example./a", "https://h.example:443/b", true},
		{"http://h:8080/a", "http://h:8081/a", false},
		{"https://h/a", "http://h/a", false},
		{"http://h:443/a", "https://h:443/a", false},
		{"http://example.com/a", "http://evil.example.com/a", false},
		{"http://[::1]:80/a", "http://[::1]/a", true},
	}
	for _, tc := range cases {
		a, _ := url.Parse(tc.a)
		b, _ := url.Parse(tc.b)
		if got := SameOrigin(a, b); got != tc.want {
			t.Errorf("SameOrigin(%s, %s) = %t, want %t", tc.a, tc.b, got, tc.want)
		}
	}
}
