package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/swell-autoscaler/swell/internal/bindaddr"
	"github.com/swell-autoscaler/swell/pkg/egress"
	"github.com/swell-autoscaler/swell/pkg/externalscaler"
)

// externalScalerOptions are the flags of `swell external-scaler`.
type externalScalerOptions struct {
	listen       string
	tls          externalscaler.TLSFiles
	pollInterval time.Duration
	idleTimeout  time.Duration
	pushGap      time.Duration
	maxFailures  int
	rateWindow   time.Duration
	etaCap       float64
	plugins      string
	secretsDir   string
	credentials  []string
	egressAllow  []string
	egressDeny   []string
	metricsAddr  string
	grace        time.Duration
	logJSON      bool
}

// newExternalScalerCmd is `swell external-scaler`: a KEDA external scaler
// (externalscaler.proto) answering from any Swell source.
func newExternalScalerCmd() *cobra.Command {
	o := externalScalerOptions{}
	cmd := &cobra.Command{
		Use:   "external-scaler",
		Short: "Serve KEDA's external scaler gRPC protocol from Swell's sources",
		Long: `external-scaler answers KEDA's IsActive, StreamIsActive, GetMetricSpec and
GetMetrics for ScaledObjects whose external trigger points here. Their
metadata names a source (kafka, burrow, redis, rabbitmq, nats, prometheus,
http) or uses the Azul scaler's keys (entityType/pluginName/targetSize/
includeHistoric, with --plugins). See docs/external-scaler.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runExternalScaler(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", ":8090", "gRPC listen address")
	f.StringVar(&o.tls.CertFile, "tls-cert", "", "server certificate (PEM); with --tls-key turns TLS on")
	f.StringVar(&o.tls.KeyFile, "tls-key", "", "server private key (PEM)")
	f.StringVar(&o.tls.ClientCAFile, "tls-client-ca", "", "CA bundle (PEM) that must sign client certificates (mutual TLS)")
	f.DurationVar(&o.pollInterval, "poll-interval", 5*time.Second, "how often each target is measured")
	f.DurationVar(&o.pushGap, "push-gap", time.Second, "least time between two polls of one target that push notifications trigger (a busy Redis or NATS queue notifies on every message)")
	f.DurationVar(&o.idleTimeout, "idle-timeout", 10*time.Minute, "stop measuring a target nobody asked about for this long")
	f.IntVar(&o.maxFailures, "max-failures", 3, "consecutive failed polls after which a target's value is withdrawn (Unavailable)")
	f.DurationVar(&o.rateWindow, "rate-window", time.Minute, "window of the Kafka consumption rate behind the ETA")
	f.Float64Var(&o.etaCap, "eta-cap", 3600, "ETA in seconds reported when lag waits and nothing is consumed")
	f.StringVar(&o.plugins, "plugins", "", "Azul plugins file mapping pluginName to Kafka consumer groups")
	f.StringVar(&o.secretsDir, "secrets-dir", "/etc/swell/secrets", "directory `<key>File` metadata may read credentials from")
	f.StringArrayVar(&o.credentials, "credential", nil, "declare a credential of --secrets-dir and the broker addresses it may be sent to, NAME=HOST:PORT[,HOST:PORT...] (repeatable); `<key>File` may name only declared credentials, and only with these addresses")
	f.StringSliceVar(&o.egressAllow, "egress-allow", nil, "addresses metadata may name although refused by default (loopback, link-local, private ranges): CIDR, address or host:port (repeatable); in-cluster brokers need their range or host:port here")
	f.StringSliceVar(&o.egressDeny, "egress-deny", nil, "more CIDRs metadata may not name (repeatable)")
	f.StringVar(&o.metricsAddr, "metrics-addr", "127.0.0.1:9090", "address of /metrics and /healthz (unauthenticated; use :9090 for a Prometheus scrape or kubelet probe); 0 disables it")
	f.DurationVar(&o.grace, "shutdown-grace", 10*time.Second, "how long a stop waits for in-flight calls")
	f.BoolVar(&o.logJSON, "log-json", false, "log JSON instead of text")
	return cmd
}

func runExternalScaler(ctx context.Context, o externalScalerOptions) error {
	log := externalScalerLogger(o.logJSON)
	tlsCfg, err := o.tls.Config()
	if err != nil {
		return err
	}
	bindings := externalscaler.Bindings{}
	for _, c := range o.credentials {
		if err := externalscaler.ParseBinding(bindings, c); err != nil {
			return err
		}
	}
	policy, err := o.egressPolicy(ctx, os.Getenv)
	if err != nil {
		return err
	}
	parser := &externalscaler.Parser{
		Files:    externalscaler.SecretFiles{Dir: o.secretsDir, Bindings: bindings},
		Defaults: externalscaler.Defaults{RateWindow: o.rateWindow, ETACap: o.etaCap},
		Egress:   policy,
	}
	if o.plugins != "" {
		if parser.Plugins, err = externalscaler.LoadPlugins(o.plugins, os.Getenv); err != nil {
			return err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := externalscaler.NewMetrics(reg)
	tracker := externalscaler.NewTracker(externalscaler.TrackerOptions{
		Interval: o.pollInterval, PushGap: o.pushGap, IdleTimeout: o.idleTimeout, MaxFailures: o.maxFailures, Logger: log, Metrics: m,
	})
	defer tracker.Close()
	defer serveMetrics(o.metricsAddr, reg, log)()
	lis, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", o.listen, err)
	}
	srv := externalscaler.NewServer(externalscaler.NewService(parser, tracker, log), m, tlsCfg, log)
	warnPlaintext(log, o.listen, tlsCfg != nil, o.tls.ClientCAFile != "")
	log.Info("external scaler listening", "addr", lis.Addr().String(), "tls", tlsCfg != nil,
		"mtls", o.tls.ClientCAFile != "", "pollInterval", o.pollInterval, "plugins", o.plugins)
	return srv.Serve(ctx, lis, o.grace)
}

// egressPolicy is the policy metadata addresses dial under: the default
// refused ranges plus the flags, with the Kubernetes API server refused too.
// The scaler has no kubeconfig, so the API server is the in-cluster Service
// address the kubelet puts in every pod's environment; without it an allowed
// range such as the service CIDR would open the API server as well.
func (o externalScalerOptions) egressPolicy(ctx context.Context, getenv func(string) string) (*egress.Policy, error) {
	p, err := egress.New(ctx, egress.Config{Allow: o.egressAllow, Deny: o.egressDeny, APIServer: inClusterAPIServer(getenv)})
	if err != nil {
		return nil, fmt.Errorf("egress policy: %w", err)
	}
	return p, nil
}

// inClusterAPIServer is KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT
// (the host alone, refused on every port, when the port is unset), or
// nothing outside a cluster.
func inClusterAPIServer(getenv func(string) string) []string {
	host := strings.TrimSpace(getenv("KUBERNETES_SERVICE_HOST"))
	if host == "" {
		return nil
	}
	port := strings.TrimSpace(getenv("KUBERNETES_SERVICE_PORT"))
	if port == "" {
		return []string{host}
	}
	return []string{net.JoinHostPort(host, port)}
}

// warnPlaintext warns, once at start, when the gRPC server is reachable
// from other hosts without TLS (anyone on the network can ask it to measure
// and read its answers) or without client certificates.
func warnPlaintext(log *slog.Logger, addr string, tls, mtls bool) {
	switch {
	case bindaddr.IsLoopback(addr):
	case !tls:
		log.Warn("external scaler serves PLAINTEXT gRPC without authentication on a non-loopback address: any peer that reaches it can query every source the scaler can read; set --tls-cert/--tls-key and --tls-client-ca (mutual TLS with KEDA), or --listen 127.0.0.1:8090",
			"addr", addr)
	case !mtls:
		log.Warn("external scaler serves TLS without client certificates on a non-loopback address: any peer that reaches it can query it; set --tls-client-ca for mutual TLS with KEDA",
			"addr", addr)
	}
}

func externalScalerLogger(json bool) *slog.Logger {
	if json {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}
