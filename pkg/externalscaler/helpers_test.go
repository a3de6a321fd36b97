package externalscaler

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/swell-autoscaler/swell/pkg/externalscaler/proto"
)

// quietLog drops logs unless a test asks for them.
func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// harness is a running server and a client generated from the proto.
type harness struct {
	client  pb.ExternalScalerClient
	conn    *grpc.ClientConn
	tracker *Tracker
	addr    string
	reg     *prometheus.Registry
}

// startServer serves on loopback with parser and tracker options;
// serverTLS and clientCreds nil mean plaintext.
func startServer(t testing.TB, parser *Parser, to TrackerOptions, serverTLS *tls.Config, clientTLS *tls.Config) *harness {
	t.Helper()
	if parser == nil {
		parser = &Parser{}
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	to.Metrics = m
	to.Logger = quietLog()
	tr := NewTracker(to)
	srv := NewServer(NewService(parser, tr, quietLog()), m, serverTLS, quietLog())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, lis, 2*time.Second); close(done) }()
	creds := insecure.NewCredentials()
	if clientTLS != nil {
		creds = credentials.NewTLS(clientTLS)
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		<-done
		tr.Close()
	})
	return &harness{client: pb.NewExternalScalerClient(conn), conn: conn, tracker: tr, addr: lis.Addr().String(), reg: reg}
}

// jsonServer serves {"queue": {"depth": <value>}} with a settable value
// and status code.
type jsonServer struct {
	*httptest.Server
	mu     sync.Mutex
	body   string
	status int
	hits   int
}

func newJSONServer(t testing.TB, body string) *jsonServer {
	s := &jsonServer{body: body, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.hits++
		w.WriteHeader(s.status)
		_, _ = io.WriteString(w, s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jsonServer) set(status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

// eventually retries f until it returns nil or the deadline passes.
func eventually(t testing.TB, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %s: %v", within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
