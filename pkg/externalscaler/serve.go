package externalscaler

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	pb "github.com/swell-autoscaler/swell/pkg/externalscaler/proto"
)

// TLSFiles are the server's certificate files. CertFile and KeyFile turn
// TLS on; ClientCAFile also requires clients (KEDA's tlsClientCert) to
// present a certificate it signed (mutual TLS).
type TLSFiles struct {
	CertFile, KeyFile, ClientCAFile string
}

// Config builds the server's TLS config, nil for plaintext.
func (f TLSFiles) Config() (*tls.Config, error) {
	switch {
	case f.CertFile == "" && f.KeyFile == "" && f.ClientCAFile == "":
		return nil, nil
	case f.CertFile == "" || f.KeyFile == "":
		return nil, errors.New("--tls-cert and --tls-key must be given together")
	}
	pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load --tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if f.ClientCAFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(f.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("read --tls-client-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--tls-client-ca %s holds no PEM certificate", f.ClientCAFile)
	}
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	return cfg, nil
}

// Server is the gRPC server: the ExternalScaler service, the standard
// health service and metrics interceptors.
type Server struct {
	grpc   *grpc.Server
	health *health.Server
	svc    *Service
	log    *slog.Logger
}

// NewServer wires svc into a gRPC server; tlsCfg nil means plaintext
// (KEDA's default).
func NewServer(svc *Service, m *Metrics, tlsCfg *tls.Config, log *slog.Logger) *Server {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(m.StreamInterceptor()),
		// KEDA keeps streams open for hours; let idle clients ping.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{grpc: grpc.NewServer(opts...), health: health.NewServer(), svc: svc, log: log}
	pb.RegisterExternalScalerServer(s.grpc, svc)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus("externalscaler.ExternalScaler", healthpb.HealthCheckResponse_SERVING)
	return s
}

// Serve answers on lis until ctx ends, then stops gracefully: health turns
// NOT_SERVING, streams end, in-flight unary calls finish within grace.
func (s *Server) Serve(ctx context.Context, lis net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("grpc serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("stopping external scaler", "grace", grace)
	s.health.Shutdown()
	s.svc.Shutdown()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		s.grpc.Stop()
	}
	return nil
}
