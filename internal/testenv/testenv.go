// Package testenv starts real components for Swell's tests and demo: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, kwok fake nodes, a
// process node that runs pods as local processes, Redis, RabbitMQ, NATS with
// JetStream, a Kafka-protocol broker, ZooKeeper, Burrow and Prometheus.
// Everything binds to loopback on free ports inside one temporary directory,
// and everything it starts is stopped again, even when the test binary
// panics or is killed.
//
// Binaries come from the cache that `make testbin` fills (see hack/); the
// directory is $SWELL_TESTBIN, defaulting to ~/.cache/swell/bin. Debian
// packages (redis-server, rabbitmq-server, nats-server, zookeeper, burrow,
// prometheus) are found on PATH.
package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/swell-autoscaler/swell/internal/procnode"
)

// Options selects the components to start. The zero value starts nothing;
// each Kubernetes component pulls in what it depends on (nodes need the
// apiserver, the apiserver needs etcd).
type Options struct {
	// APIServer starts etcd and kube-apiserver.
	APIServer bool
	// ControllerManager starts kube-controller-manager (Deployments,
	// ReplicaSets, garbage collection, node lifecycle, service accounts).
	ControllerManager bool
	// Scheduler starts kube-scheduler.
	Scheduler bool
	// KwokNodes are fake nodes managed by kwok: their pods turn Running
	// without running anything.
	KwokNodes []NodeSpec
	// ProcessNode registers a node whose pods run as local processes.
	ProcessNode *NodeSpec
	// MetricsServer starts metrics-server behind the apiserver's
	// aggregation layer, so the metrics.k8s.io API serves the real CPU and
	// memory of the process node's pods (kwok nodes have no metrics). It
	// implies APIServer; without a ProcessNode the API answers with no
	// metrics. It needs a non-loopback IPv4 address on this machine.
	MetricsServer bool
	// CustomMetrics serves custom.metrics.k8s.io and external.metrics.k8s.io
	// behind the aggregation layer from a test adapter in this process,
	// answering what the test sets through Env.CustomMetrics. It implies
	// APIServer and needs a non-loopback IPv4 address.
	CustomMetrics bool
	// Redis, RabbitMQ, NATS and Kafka start one broker each.
	Redis, RabbitMQ, NATS, Kafka bool
	// RabbitMQManagement enables RabbitMQ's management plugin (HTTP API on
	// loopback; its queue statistics lag up to 5 s) and implies RabbitMQ.
	// Off by default: the plugin makes RabbitMQ start slower.
	RabbitMQManagement bool
	// ZooKeeper starts a standalone ZooKeeper (Debian's zookeeper package).
	ZooKeeper bool
	// Burrow starts Burrow watching the Kafka broker, with committed
	// offsets read from ZooKeeper (see CommitZooKeeperOffsets); it implies
	// Kafka and ZooKeeper.
	Burrow bool
	// PrometheusTargets starts a Prometheus server scraping these
	// host:port targets' /metrics every second.
	PrometheusTargets []string
	// Auth makes Redis, RabbitMQ, NATS and Kafka require credentials;
	// nil leaves them open.
	Auth *BrokerAuth
}

// FullCluster is a control plane with scheduler, controller manager, nodes
// kwok nodes named kwok-0..n-1 of 8 CPUs / 32 GiB, and a process node.
func FullCluster(nodes int) Options {
	o := Options{APIServer: true, ControllerManager: true, Scheduler: true}
	for i := range nodes {
		o.KwokNodes = append(o.KwokNodes, NodeSpec{Name: fmt.Sprintf("kwok-%d", i)})
	}
	o.ProcessNode = &NodeSpec{Name: "process-node"}
	return o
}

// NodeSpec describes a node to register. Empty fields take defaults: 8 CPUs,
// 32Gi memory, 110 pods.
type NodeSpec struct {
	Name   string
	CPU    string
	Memory string
	Pods   string
	Labels map[string]string
	Taints []string
}

// Env is a running environment. Fields for components that were not asked
// for stay empty.
type Env struct {
	// Dir holds every component's data and log (<component>.log).
	Dir string

	EtcdURL      string
	APIServerURL string
	// Kubeconfig is a file usable by kubectl and by `swell --kubeconfig`.
	Kubeconfig string
	RESTConfig *rest.Config
	Clientset  kubernetes.Interface
	// ProcessNodeName is the node whose pods run as local processes.
	ProcessNodeName string

	RedisAddr   string
	RabbitMQURL string
	// RabbitMQManagementURL is the management HTTP API (user guest, password
	// guest), set with Options.RabbitMQManagement.
	RabbitMQManagementURL string
	NATSURL               string
	KafkaAddrs            []string
	// ZooKeeperAddr is host:port of ZooKeeper.
	ZooKeeperAddr string
	// BurrowURL is Burrow's HTTP API; BurrowCluster the Kafka cluster's
	// name in it.
	BurrowURL, BurrowCluster string
	// PrometheusURL is the Prometheus server's HTTP API.
	PrometheusURL string

	// CustomMetrics sets what the custom and external metrics APIs answer
	// (Options.CustomMetrics).
	CustomMetrics *CustomMetrics

	// Timings records how long each component took to become ready.
	Timings map[string]time.Duration

	binDir   string
	auth     *BrokerAuth
	mu       sync.Mutex
	procs    []*process
	kafka    *kfake.Cluster
	procNode *procnode.Node
	cancel   context.CancelFunc
	stopOnce sync.Once
}

// Start starts the selected components and waits until each is ready. On
// error everything already started is stopped again.
func Start(ctx context.Context, opts Options) (*Env, error) {
	dir, err := os.MkdirTemp("", "swell-testenv-")
	if err != nil {
		return nil, fmt.Errorf("create environment dir: %w", err)
	}
	bgCtx, cancel := context.WithCancel(context.Background())
	e := &Env{Dir: dir, binDir: BinDir(), Timings: map[string]time.Duration{}, cancel: cancel, auth: opts.Auth}
	if err := e.startAll(ctx, bgCtx, opts.normalized()); err != nil {
		e.Stop()
		return nil, fmt.Errorf("testenv (logs in %s): %w", dir, err)
	}
	return e, nil
}

// New starts an environment for one test and stops it when the test ends,
// keeping the logs and printing where they are when the test failed.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("start test environment: %v", err)
	}
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			t.Logf("test environment logs kept in %s:\n%s", e.Dir, e.LogTails(2000))
			return
		}
		_ = os.RemoveAll(e.Dir)
	})
	return e
}

// BinDir is where testenv finds binaries built by `make testbin`.
func BinDir() string {
	if d := os.Getenv("SWELL_TESTBIN"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "swell", "bin")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "swell", "bin")
}

func (o Options) normalized() Options {
	if len(o.KwokNodes) > 0 || o.ProcessNode != nil || o.ControllerManager || o.Scheduler || o.MetricsServer || o.CustomMetrics {
		o.APIServer = true
	}
	if o.RabbitMQManagement {
		o.RabbitMQ = true
	}
	if o.Burrow {
		o.Kafka, o.ZooKeeper = true, true
	}
	return o
}

func (e *Env) startAll(ctx, bgCtx context.Context, o Options) error {
	steps := []struct {
		name string
		on   bool
		run  func(context.Context) error
	}{
		{"control-plane", o.APIServer, func(ctx context.Context) error { return e.startControlPlane(ctx, bgCtx, o) }},
		{"redis", o.Redis, e.startRedis},
		{"rabbitmq", o.RabbitMQ, func(ctx context.Context) error { return e.startRabbitMQ(ctx, o.RabbitMQManagement) }},
		{"nats", o.NATS, e.startNATS},
		{"kafka", o.Kafka, e.startKafka},
		{"zookeeper", o.ZooKeeper, e.startZooKeeper},
		{"burrow", o.Burrow, e.startBurrow},
		{"prometheus", len(o.PrometheusTargets) > 0, func(ctx context.Context) error { return e.startPrometheus(ctx, o.PrometheusTargets) }},
	}
	for _, s := range steps {
		if !s.on {
			continue
		}
		if err := e.timed(s.name, func() error { return s.run(ctx) }); err != nil {
			return err
		}
	}
	return nil
}

func (e *Env) startControlPlane(ctx, bgCtx context.Context, o Options) error {
	pk, err := writePKI(e.Dir)
	if err != nil {
		return err
	}
	if err := e.timed("etcd", func() error { return e.startEtcd(ctx) }); err != nil {
		return err
	}
	if err := e.timed("kube-apiserver", func() error { return e.startAPIServer(ctx, pk) }); err != nil {
		return err
	}
	if o.ControllerManager {
		if err := e.timed("kube-controller-manager", func() error { return e.startControllerManager(ctx, pk) }); err != nil {
			return err
		}
	}
	if o.Scheduler {
		if err := e.timed("kube-scheduler", func() error { return e.startScheduler(ctx) }); err != nil {
			return err
		}
	}
	if len(o.KwokNodes) > 0 {
		if err := e.timed("kwok", func() error { return e.startKwok(ctx, o.KwokNodes) }); err != nil {
			return err
		}
	}
	if o.ProcessNode != nil {
		if err := e.timed("process-node", func() error { return e.startProcessNode(ctx, bgCtx, *o.ProcessNode) }); err != nil {
			return err
		}
	}
	if o.MetricsServer {
		if err := e.timed("metrics-server", func() error { return e.startMetricsServer(ctx) }); err != nil {
			return err
		}
	}
	if o.CustomMetrics {
		if err := e.timed("custom-metrics", func() error { return e.startCustomMetrics(ctx, bgCtx) }); err != nil {
			return err
		}
	}
	return nil
}

func (e *Env) timed(name string, f func() error) error {
	start := time.Now()
	err := f()
	e.mu.Lock()
	e.Timings[name] = time.Since(start)
	e.mu.Unlock()
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	return nil
}

// start launches a component process and registers it for Stop.
func (e *Env) start(name, bin string, args, env []string) (*process, error) {
	p, err := startProcess(name, e.Dir, bin, args, env)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p, nil
}

// bin is the path of a cached test binary (CheckBinaries says when one is
// missing).
func (e *Env) bin(name string) string {
	return filepath.Join(e.binDir, name)
}

// lookSystem finds a Debian-packaged program on PATH or in sbin.
func lookSystem(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/lib/rabbitmq/bin", "/usr/bin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: run `make testbin` (hack/install-deps.sh installs it)", name)
}

// Stop stops every component, newest first, and waits for each process to
// exit. It keeps Dir (logs); callers remove it when they no longer need it.
func (e *Env) Stop() {
	e.stopOnce.Do(func() {
		if e.procNode != nil {
			e.procNode.Shutdown(5 * time.Second)
		}
		e.cancel()
		if e.kafka != nil {
			e.kafka.Close()
		}
		e.mu.Lock()
		procs := append([]*process(nil), e.procs...)
		e.mu.Unlock()
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(5 * time.Second)
		}
	})
}

// LogTails returns the last n bytes of each component log, for failure reports.
func (e *Env) LogTails(n int64) string {
	e.mu.Lock()
	procs := append([]*process(nil), e.procs...)
	e.mu.Unlock()
	sort.Slice(procs, func(i, j int) bool { return procs[i].name < procs[j].name })
	var b strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&b, "----- %s (%s) -----\n%s\n", p.name, p.logPath, p.tail(n))
	}
	return b.String()
}

// CheckBinaries reports which cached test binaries are missing, so a test
// run fails with one clear message instead of one per component.
func CheckBinaries() error {
	var missing []string
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kwok-stages.yaml"} {
		if _, err := os.Stat(filepath.Join(BinDir(), name)); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing test binaries in %s: %s; run `make testbin`", BinDir(), strings.Join(missing, ", "))
	}
	return nil
}

// RunPackage is the TestMain of a test package whose tests share one
// environment: it starts opts within startTimeout, hands the environment to
// use, runs the tests, stops everything and returns the exit code for
// os.Exit. The environment's directory (component logs) is kept, and named,
// when a test failed.
func RunPackage(m *testing.M, opts Options, startTimeout time.Duration, use func(*Env)) int {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	env, err := Start(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	use(env)
	code := m.Run()
	env.Stop()
	if code != 0 {
		fmt.Fprintln(os.Stderr, "testenv: component logs kept in", env.Dir)
		return code
	}
	_ = os.RemoveAll(env.Dir)
	return code
}
