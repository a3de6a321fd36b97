package cpa

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swell-autoscaler/swell/pkg/egress"
)

func shellMethod(timeoutMs int, entry string, args ...string) *Method {
	return &Method{Type: MethodShell, Timeout: timeoutMs, Shell: &Shell{Entrypoint: entry, Command: args}}
}

func TestShellMethod(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "pwned")
	cases := []struct {
		name    string
		m       *Method
		input   string
		want    string
		wantErr string
	}{
		{"stdin to stdout", shellMethod(0, "cat"), `{"a":1}`, `{"a":1}`, ""},
		{"semicolon is not interpreted", shellMethod(0, "echo", "a; touch "+marker), "", "a; touch " + marker + "\n", ""},
		{"dollar is not expanded", shellMethod(0, "echo", "$HOME", "`id`"), "", "$HOME `id`\n", ""},
		{"non-zero exit names code and stderr", shellMethod(0, "sh", "-c", "echo boom >&2; exit 3"), "", "", `exit code 3 (stderr: "boom")`},
		{"timeout", shellMethod(100, "sleep", "5"), "", "", "timed out after 100ms"},
		{"timeout kills children holding the pipe", shellMethod(100, "sh", "-c", "sleep 5; echo late"), "", "", "timed out"},
		{"missing entrypoint", shellMethod(0, "/nonexistent/script"), "", "", "no such file"},
	}
	e := NewExecutor()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			got, err := e.Run(context.Background(), c.m, []byte(c.input))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, c.wantErr)
				}
				if time.Since(start) > 4*time.Second {
					t.Fatalf("a timed-out method was not killed (took %s)", time.Since(start))
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("an argument was run by a shell: the marker file exists")
	}
}

func TestHTTPMethodParameterModes(t *testing.T) {
	var gotQuery, gotBody, gotHeader, gotMethod string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotQuery, gotBody, gotHeader, gotMethod = r.URL.Query().Get("value"), string(b), r.Header.Get("X-Token"), r.Method
		if r.URL.Query().Get("fail") != "" {
			w.WriteHeader(http.StatusTeapot)
		}
		_, _ = w.Write([]byte(`{"targetReplicas": 2}`))
	}))
	defer srv.Close()
	input := `{"metrics":[{"resource":"a","value":"1 & 2"}]}`
	cases := []struct {
		name, mode, url string
		codes           []int
		wantQuery       string
		wantBody        string
		wantErr         string
	}{
		{"query", ParameterQuery, srv.URL + "?keep=1", []int{200}, input, "", ""},
		{"body", ParameterBody, srv.URL, []int{200}, "", input, ""},
		{"status not in successCodes", ParameterBody, srv.URL + "?fail=1", []int{200, 201}, "", "", "status 418 not in successCodes [200 201]"},
		{"teapot allowed", ParameterBody, srv.URL + "?fail=1", []int{418}, "", input, ""},
	}
	e := NewExecutor()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := &Method{Type: MethodHTTP, HTTP: &HTTP{Method: "POST", URL: c.url, SuccessCodes: c.codes, ParameterMode: c.mode, Headers: map[string]string{"X-Token": "t"}}}
			out, err := e.Run(context.Background(), m, []byte(input))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || out != `{"targetReplicas": 2}` {
				t.Fatalf("out %q, err %v", out, err)
			}
			if gotQuery != c.wantQuery || gotBody != c.wantBody || gotHeader != "t" || gotMethod != "POST" {
				t.Fatalf("server saw query %q body %q header %q method %s", gotQuery, gotBody, gotHeader, gotMethod)
			}
		})
	}
}

func TestHTTPMethodTimeoutAndUnreachable(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	_ = ln.Close()
	e := NewExecutor()
	for name, c := range map[string]struct {
		url     string
		timeout int
		want    string
	}{
		"timeout":     {slow.URL, 100, "timed out after 100ms"},
		"unreachable": {closed, 0, "connection refused"},
	} {
		t.Run(name, func(t *testing.T) {
			m := &Method{Type: MethodHTTP, Timeout: c.timeout, HTTP: &HTTP{Method: "GET", URL: c.url, SuccessCodes: []int{200}, ParameterMode: ParameterQuery}}
			if _, err := e.Run(context.Background(), m, []byte("{}")); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func TestHTTPMethodTLSWithGeneratedCA(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	serverCert := ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	clientCertFile, clientKeyFile := ca.issueFiles(t, dir, "client", x509.ExtKeyUsageClientAuth)
	caFile := filepath.Join(dir, "ca.pem")
	writePEM(t, caFile, "CERTIFICATE", ca.cert.Raw)

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("hello " + r.TLS.PeerCertificates[0].Subject.CommonName))
	}))
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()

	e := NewExecutor()
	m := &Method{Type: MethodHTTP, HTTP: &HTTP{Method: "GET", URL: srv.URL, SuccessCodes: []int{200}, ParameterMode: ParameterQuery,
		CACert: caFile, ClientCert: clientCertFile, ClientKey: clientKeyFile}}
	out, err := e.Run(context.Background(), m, []byte("{}"))
	if err != nil || out != "hello client" {
		t.Fatalf("out %q, err %v", out, err)
	}
	noCA := &Method{Type: MethodHTTP, HTTP: &HTTP{Method: "GET", URL: srv.URL, SuccessCodes: []int{200}, ParameterMode: ParameterQuery}}
	if _, err := e.Run(context.Background(), noCA, []byte("{}")); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without caCert: err = %v, want a certificate error", err)
	}
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	der, key := ca.sign(t, cn, usage)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca *testCA) issueFiles(t *testing.T, dir, cn string, usage x509.ExtKeyUsage) (string, string) {
	t.Helper()
	der, key := ca.sign(t, cn, usage)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func (ca *testCA) sign(t *testing.T, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestStoppedTellsTimeoutFromShutdown(t *testing.T) {
	expired, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-expired.Done()
	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	for name, tc := range map[string]struct {
		ctx  context.Context
		want string
	}{
		"timeout":  {expired, "timed out after 300ms"},
		"shutdown": {canceled, "stopped: context canceled"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := stopped(tc.ctx, 300*time.Millisecond); got != tc.want {
				t.Fatalf("stopped() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestShellOutputLimit pins the 4 MiB bound on what a command prints,
// however os/exec copies it in: exactly the limit is kept, one byte more
// (or 30 MiB) is a clear error, never an answer.
func TestShellOutputLimit(t *testing.T) {
	emit := func(n int) *Method {
		return shellMethod(20000, "sh", "-c", fmt.Sprintf("head -c %d /dev/zero | tr '\\0' x", n))
	}
	cases := []struct {
		name    string
		m       *Method
		wantLen int
		wantErr string
	}{
		{"small", emit(10), 10, ""},
		{"exactly 4 MiB", emit(maxOutput), maxOutput, ""},
		{"4 MiB and one byte", emit(maxOutput + 1), 0, "output larger than 4194304 bytes (4 MiB), refused"},
		{"30 MiB", emit(30 << 20), 0, "output larger than 4194304 bytes"},
		{"30 MiB on stderr with a good answer", shellMethod(20000, "sh", "-c", "head -c 31457280 /dev/zero | tr '\\0' x >&2; echo 3"), 2, ""},
	}
	e := NewExecutor()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := e.Run(context.Background(), c.m, nil)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v (output %d bytes), want it to contain %q", err, len(got), c.wantErr)
				}
				return
			}
			if err != nil || len(got) != c.wantLen {
				t.Fatalf("got %d bytes, %v; want %d bytes", len(got), err, c.wantLen)
			}
		})
	}
}

// TestHTTPBodyLimit pins the 4 MiB bound on an http method's body, sent with
// a Content-Length or chunked: exactly the limit is the answer, one byte
// more (or 30 MiB) is an error naming the limit, never a truncated answer.
func TestHTTPBodyLimit(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		_, _ = w.Write(bytes.Repeat([]byte("x"), n))
	}))
	defer srv.Close()
	const limitErr = "body larger than 4194304 bytes (4 MiB), refused"
	cases := []struct {
		name    string
		size    int
		chunked bool
		wantErr string
	}{
		{"small", 10, false, ""},
		{"exactly 4 MiB", maxOutput, false, ""},
		{"exactly 4 MiB, chunked", maxOutput, true, ""},
		{"4 MiB and one byte", maxOutput + 1, false, limitErr},
		{"4 MiB and one byte, chunked", maxOutput + 1, true, limitErr},
		{"30 MiB", 30 << 20, false, limitErr},
	}
	e := NewExecutor()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := fmt.Sprintf("%s?n=%d", srv.URL, c.size)
			if c.chunked {
				u += "&chunked=1"
			}
			m := &Method{Type: MethodHTTP, Timeout: 20000, HTTP: &HTTP{Method: "GET", URL: u, SuccessCodes: []int{200}, ParameterMode: ParameterQuery}}
			got, err := e.Run(context.Background(), m, []byte("{}"))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v (body %d bytes), want it to contain %q", err, len(got), c.wantErr)
				}
				return
			}
			if err != nil || len(got) != c.size {
				t.Fatalf("got %d bytes, %v; want %d bytes", len(got), err, c.size)
			}
		})
	}
}

// TestLimitedBufferHasNoReadFrom guards the cause of the old bypass: a
// ReadFrom method lets io.Copy skip Write and its limit.
func TestLimitedBufferHasNoReadFrom(t *testing.T) {
	var w io.Writer = &limitedBuffer{}
	if _, ok := w.(io.ReaderFrom); ok {
		t.Fatal("limitedBuffer implements io.ReaderFrom; io.Copy would bypass its limit")
	}
	var b limitedBuffer
	n, err := io.Copy(&b, strings.NewReader(strings.Repeat("y", maxOutput+10)))
	if err != nil || n != maxOutput+10 || len(b.String()) != maxOutput || !b.truncated {
		t.Fatalf("io.Copy: n=%d err=%v kept=%d truncated=%v; want all read, %d kept, truncated", n, err, len(b.String()), b.truncated, maxOutput)
	}
}

// TestShellLogStderr pins logStderr: CPA logs a successful command's stderr
// when it is true; Swell does so at info level (debug otherwise), and a
// failed command's stderr is in its error either way.
func TestShellLogStderr(t *testing.T) {
	yes, no := true, false
	cases := []struct {
		name      string
		logStderr *bool
		script    string
		wantLevel string // level of the "command stderr" record; "" for none
		wantErr   string
	}{
		{"true logs at info", &yes, "echo warming up >&2; echo 3", "INFO", ""},
		{"false logs at debug", &no, "echo warming up >&2; echo 3", "DEBUG", ""},
		{"unset logs at debug", nil, "echo warming up >&2; echo 3", "DEBUG", ""},
		{"true with empty stderr logs nothing", &yes, "echo 3", "", ""},
		{"true on failure: stderr in the error", &yes, "echo warming up >&2; exit 2", "", `exit code 2 (stderr: "warming up")`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var logs strings.Builder
			e := NewExecutorWithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			m := shellMethod(0, "sh", "-c", c.script)
			m.Shell.LogStderr = c.logStderr
			out, err := e.Run(context.Background(), m, nil)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, c.wantErr)
				}
			} else if err != nil || out != "3\n" {
				t.Fatalf("got %q, %v; want \"3\\n\"", out, err)
			}
			var records []string
			for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				if strings.Contains(line, `msg="command stderr"`) {
					records = append(records, line)
				}
			}
			if c.wantLevel == "" {
				if len(records) != 0 {
					t.Fatalf("logged %q, want no stderr record", records)
				}
				return
			}
			if len(records) != 1 || !strings.Contains(records[0], "level="+c.wantLevel) || !strings.Contains(records[0], `stderr="warming up\n"`) {
				t.Fatalf("records = %q, want one at %s with stderr \"warming up\\n\"", records, c.wantLevel)
			}
		})
	}
}

// TestHTTPMethodUnderEgressPolicy: with a policy set, an http method aimed at
// a refused address (loopback here) never reaches it and says which flag
// allows it; allowing the address makes the same method work; without a
// policy (swell cpa's default) it works as in CPA.
func TestHTTPMethodUnderEgressPolicy(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte(`{"targetReplicas": 3}`))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	m := &Method{Type: MethodHTTP, HTTP: &HTTP{Method: "GET", URL: srv.URL, SuccessCodes: []int{200}, ParameterMode: ParameterQuery}}
	for _, tc := range []struct {
		name     string
		allow    []string
		restrict bool
		wantErr  string
		wantHits int32
	}{
		{name: "no policy", wantHits: 1},
		{name: "restricted", restrict: true, wantErr: "--egress-allow", wantHits: 0},
		{name: "restricted, address allowed", restrict: true, allow: []string{addr}, wantHits: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits.Store(0)
			e := NewExecutor()
			if tc.restrict {
				p, err := egress.New(context.Background(), egress.Config{Allow: tc.allow})
				if err != nil {
					t.Fatal(err)
				}
				e.SetEgress(p)
			}
			_, err := e.Run(context.Background(), m, []byte(`{}`))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Run: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Run error = %v, want one naming %s", err, tc.wantErr)
			}
			if got := hits.Load(); got != tc.wantHits {
				t.Errorf("server saw %d requests, want %d", got, tc.wantHits)
			}
		})
	}
}
