package burrow

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// lagOK is Burrow 1.x's documented answer to
// GET /v3/kafka/(cluster)/consumer/(group)/lag, abridged to one partition.
const lagOK = `{
  "error": false,
  "message": "consumer status returned",
  "status": {
    "cluster": "local", "group": "orders", "status": "WARN", "complete": 1,
    "partitions": [{"topic": "orders", "partition": 0, "owner": "", "client_id": "",
      "status": "WARN", "start": {"offset": 10, "timestamp": 1, "lag": 5},
      "end": {"offset": 20, "timestamp": 2, "lag": 42}, "current_lag": 42, "complete": 1}],
    "partition_count": 1,
    "maxlag": null,
    "totallag": 42
  },
  "request": {"url": "/v3/kafka/local/consumer/orders/lag", "host": "burrow"}
}`

// groupNotFound is how Burrow 1.2 answers a group it has not seen: HTTP
// 404 with error false and a NOTFOUND status.
const groupNotFound = `{"error": false, "message": "consumer status returned",
  "status": {"cluster": "local", "group": "gone", "status": "NOTFOUND", "complete": 1, "partitions": [], "partition_count": 0, "maxlag": null, "totallag": 0},
  "request": {"url": "/v3/kafka/local/consumer/gone/lag", "host": "burrow"}}`

const notFound = `{"error": true, "message": "cluster or consumer not found",
  "request": {"url": "/v3/kafka/local/consumer/nope/lag", "host": "burrow"}}`

func fakeBurrow(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "u" || p != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error": true, "message": "unauthorized"}`))
			return
		}
		switch r.URL.Path {
		case "/v3/kafka/local/consumer/orders/lag":
			_, _ = w.Write([]byte(lagOK))
		case "/v3/kafka/local/consumer/gone/lag":
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(groupNotFound))
		case "/v3/kafka/local/consumer/html/lag":
			_, _ = w.Write([]byte("<html>proxy error</html>"))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(notFound))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestGroupMeasuresTotalLag(t *testing.T) {
	srv := fakeBurrow(t)
	c, err := New(Config{URL: srv.URL, Cluster: "local", Username: "u", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	src, err := c.Group("orders")
	if err != nil {
		t.Fatal(err)
	}
	s, err := src.Measure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Backlog != 42 || s.Ready != 42 || s.InFlight != 0 || s.Time.IsZero() {
		t.Fatalf("sample = %+v, want backlog 42", s)
	}
	st, err := c.Lag(context.Background(), "orders")
	if err != nil || st.Status != "WARN" || st.PartitionCount != 1 || st.Complete != 1 {
		t.Fatalf("status = %+v, %v", st, err)
	}
}

func TestErrorsAreNeverZero(t *testing.T) {
	srv := fakeBurrow(t)
	good, _ := New(Config{URL: srv.URL, Cluster: "local", Username: "u", Password: "s3cret"})
	bad, _ := New(Config{URL: srv.URL, Cluster: "local", Username: "u", Password: "wrong"})
	dead, _ := New(Config{URL: "http://127.0.0.1:1", Cluster: "local"})
	for name, tc := range map[string]struct {
		c     *Client
		group string
		want  string
	}{
		"unknown group": {good, "nope", "HTTP 404: burrow answered an error"},
		"group unseen":  {good, "gone", "NOTFOUND"},
		"not json":      {good, "html", "not Burrow JSON"},
		"unauthorized":  {bad, "orders", "HTTP 401: burrow answered an error"},
		"dead burrow":   {dead, "orders", "connect"},
	} {
		t.Run(name, func(t *testing.T) {
			src, _ := tc.c.Group(tc.group)
			_, err := src.Measure(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "wrong") {
				t.Fatalf("error leaks the password: %v", err)
			}
			// What Burrow answered is never quoted (it would reach a status).
			for _, said := range []string{"cluster or consumer not found", "unauthorized", "<html"} {
				if strings.Contains(err.Error(), said) {
					t.Fatalf("error quotes the answer (%q): %v", said, err)
				}
			}
		})
	}
}

func TestConfigValidateNamesFields(t *testing.T) {
	err := Config{URL: "ftp://x", Username: "u", Timeout: -1}.Validate()
	for _, want := range []string{"url must be http", "cluster is required", "username and password", "timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %q", err, want)
		}
	}
	if err := (Config{URL: "http://u:p@h:1", Cluster: "c"}).Validate(); err == nil || strings.Contains(err.Error(), "u:p") {
		t.Errorf("credentials in URL: %v", err)
	}
}
