// Package scalertest runs Swell's KEDA external scaler in process for
// tests: the real externalscaler Parser, Tracker, Service and gRPC Server
// on a loopback listener, and a client generated from the proto connected
// to it. It exists so any test, in this repository or a user's, can run the
// external scaler in-process against real sources and talk to it over real
// gRPC, as KEDA does, without copying the wiring. Swell's own tests
// (pkg/externalscaler and the KEDA end-to-end test) use it, the way
// net/http/httptest serves handler authors.
package scalertest

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/swell-autoscaler/swell/pkg/externalscaler"
	pb "github.com/swell-autoscaler/swell/pkg/externalscaler/proto"
)

// grace is how long the server's graceful stop may take at cleanup.
const grace = 2 * time.Second

// Options configure Start. The zero value serves plaintext with a default
// Parser and the Tracker's defaults.
type Options struct {
	// Parser reads scalerMetadata; nil means &externalscaler.Parser{}.
	Parser *externalscaler.Parser
	// Tracker configures polling. Start sets its Metrics (recorded in
	// Scaler.Registry) and its Logger (discarding).
	Tracker externalscaler.TrackerOptions
	// ServerTLS is the server's TLS config; nil serves plaintext.
	ServerTLS *tls.Config
	// ClientTLS is the client's TLS config; nil dials plaintext.
	ClientTLS *tls.Config
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}

// Scaler is a running external scaler and a client connected to it.
type Scaler struct {
	// Addr is the server's host:port on loopback, a ScaledObject's
	// scalerAddress.
	Addr string
	// Client calls the ExternalScaler rpcs over Conn.
	Client pb.ExternalScalerClient
	// Conn is the client connection, for the server's other services
	// (health).
	Conn *grpc.ClientConn
	// Tracker is the server's tracker of measured targets.
	Tracker *externalscaler.Tracker
	// Registry holds the server's Prometheus metrics.
	Registry *prometheus.Registry
}

// Start serves the external scaler on a loopback port and connects a
// client to it. t.Cleanup closes the client, stops the server gracefully
// (waiting for it) and closes the tracker. Start fails t if the server
// cannot listen or the client cannot be made.
func Start(t testing.TB, o Options) *Scaler {
	t.Helper()
	s, stop, err := start(o)
	if err != nil {
		t.Fatalf("scalertest: %v", err)
	}
	t.Cleanup(stop)
	return s
}

// start builds and serves the scaler, and returns the function that
// stops it.
func start(o Options) (*Scaler, func(), error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("listen on loopback: %w", err)
	}
	creds := insecure.NewCredentials()
	if o.ClientTLS != nil {
		creds = credentials.NewTLS(o.ClientTLS)
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		_ = lis.Close()
		return nil, nil, fmt.Errorf("grpc client for %s: %w", lis.Addr(), err)
	}

	parser := o.Parser
	if parser == nil {
		parser = &externalscaler.Parser{}
	}
	reg := prometheus.NewRegistry()
	m := externalscaler.NewMetrics(reg)
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	to := o.Tracker
	to.Metrics, to.Logger = m, log
	tracker := externalscaler.NewTracker(to)
	srv := externalscaler.NewServer(externalscaler.NewService(parser, tracker, log), m, o.ServerTLS, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, lis, grace); close(done) }()

	stop := func() {
		_ = conn.Close()
		cancel()
		<-done
		tracker.Close()
	}
	s := &Scaler{Addr: lis.Addr().String(), Client: pb.NewExternalScalerClient(conn), Conn: conn, Tracker: tracker, Registry: reg}
	return s, stop, nil
}
