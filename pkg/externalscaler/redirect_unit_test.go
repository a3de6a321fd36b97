package externalscaler

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// authLog records the Authorization header of each request a server got.
type authLog struct {
	mu   sync.Mutex
	auth []string
}

func (a *authLog) handler(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.auth = append(a.auth, r.Header.Get("Authorization"))
		a.mu.Unlock()
		next(w, r)
	}
}

func (a *authLog) get() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.auth...)
}

// answer is a document both the http source (valueLocation "v") and the
// prometheus source (a scalar) read as 3.
func answer(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"v":3,"status":"success","data":{"resultType":"scalar","result":[0,"3"]}}`))
}

// TestBoundTokenOnRedirect: an http or prometheus source whose bearer token
// is bound to its server, redirected by that server to another port of the
// same host: the token never reaches the other port; a redirect to an
// address not declared for the token is refused with a BindingError before
// the other port is contacted; a declared one is followed without the
// token; a redirect within the origin keeps it.
func TestBoundTokenOnRedirect(t *testing.T) {
	const token = "s3cret-token"
	cases := []struct {
		name         string
		source       string
		fromFile     bool // bearerTokenFile (bound) instead of bearerTokenFromEnv
		declareOther bool
		toOther      bool // redirect to the other port instead of within the origin
		wantBinding  bool
		wantOrigin   []string
		wantOther    []string
	}{
		{name: "http bound, other port undeclared", source: "http", fromFile: true, toOther: true, wantBinding: true,
			wantOrigin: []string{"Bearer " + token}},
		{name: "prometheus bound, other port undeclared", source: "prometheus", fromFile: true, toOther: true, wantBinding: true,
			wantOrigin: []string{"Bearer " + token}},
		{name: "http bound, other port declared", source: "http", fromFile: true, declareOther: true, toOther: true,
			wantOrigin: []string{"Bearer " + token}, wantOther: []string{""}},
		{name: "http from env, other port", source: "http", toOther: true,
			wantOrigin: []string{"Bearer " + token}, wantOther: []string{""}},
		{name: "prometheus from env, other port", source: "prometheus", toOther: true,
			wantOrigin: []string{"Bearer " + token}, wantOther: []string{""}},
		{name: "http bound, same origin", source: "http", fromFile: true,
			wantOrigin: []string{"Bearer " + token, "Bearer " + token}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var originLog, otherLog authLog
			other := httptest.NewServer(otherLog.handler(answer))
			t.Cleanup(other.Close)
			origin := httptest.NewServer(originLog.handler(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/final" {
					answer(w, r)
					return
				}
				to := "/final"
				if tc.toOther {
					to = other.URL + "/final"
				}
				http.Redirect(w, r, to, http.StatusFound)
			}))
			t.Cleanup(origin.Close)
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			b := Bindings{}
			decl := "token=" + hostOf(origin.URL)
			if tc.declareOther {
				decl += "," + hostOf(other.URL)
			}
			if err := ParseBinding(b, decl); err != nil {
				t.Fatal(err)
			}
			md := map[string]string{"source": tc.source}
			switch tc.source {
			case "http":
				md["url"], md["valueLocation"] = origin.URL+"/go", "v"
			case "prometheus":
				md["serverAddress"], md["query"] = origin.URL, "up"
			}
			if tc.fromFile {
				md["bearerTokenFile"] = "token"
			} else {
				md["bearerTokenFromEnv"] = token
			}
			p := &Parser{Files: SecretFiles{Dir: dir, Bindings: b}}
			spec, err := p.Parse(md)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			pr, err := spec.target.open(context.Background(), nil)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			_, err = pr.measure(context.Background(), time.Now())
			var be *BindingError
			if got := errors.As(err, &be); got != tc.wantBinding {
				t.Fatalf("measure = %v, want a BindingError: %v", err, tc.wantBinding)
			}
			if !tc.wantBinding && err != nil {
				t.Fatalf("measure: %v", err)
			}
			if got := originLog.get(); !slices.Equal(got, tc.wantOrigin) {
				t.Errorf("origin saw Authorization %q, want %q", got, tc.wantOrigin)
			}
			if got := otherLog.get(); !slices.Equal(got, tc.wantOther) {
				t.Errorf("other port saw Authorization %q, want %q", got, tc.wantOther)
			}
		})
	}
}

// TestBoundRedirectCapsAndStrips: the bound CheckRedirect keeps
// egress.CheckRedirect's cap.
func TestBoundRedirectCapsAndStrips(t *testing.T) {
	check := boundRedirect(Bindings{"t": {"a:80"}}, []string{"t"})
	u, _ := url.Parse("http://a/x")
	first := &http.Request{URL: u, Header: http.Header{}}
	next := &http.Request{URL: u, Header: http.Header{"Authorization": {"Bearer x"}}}
	if err := check(next, []*http.Request{first, first, first}); err == nil {
		t.Fatal("a fourth redirect was followed")
	}
	if err := check(next, []*http.Request{first}); err != nil || next.Header.Get("Authorization") == "" {
		t.Fatalf("same-origin redirect: err %v, Authorization %q", err, next.Header.Get("Authorization"))
	}
}
