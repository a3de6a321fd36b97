package demo

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	"github.com/swell-autoscaler/swell/config/crd"
	"github.com/swell-autoscaler/swell/internal/controller"
	"github.com/swell-autoscaler/swell/internal/procnode"
	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/egress"
)

// Options configure the demo.
type Options struct {
	// Nodes is the number of kwok nodes.
	Nodes int
	// KubeconfigOut is where the cluster's kubeconfig is copied.
	KubeconfigOut string
	// Worker is the swell binary the worker pods run (`swell demo-worker`).
	Worker string
	// TaskTime is how long each task takes a worker.
	TaskTime time.Duration
	// PhaseScale stretches (>1) or shrinks (<1) the load schedule.
	PhaseScale float64
	// Refresh is the live view's refresh period.
	Refresh time.Duration
	// Out receives the view; Log receives start-up messages.
	Out io.Writer
}

const (
	namespace = "default"
	queue     = "demo"
	name      = "demo"
)

// Run starts the cluster, the controller, the sample QWorker and the load,
// then draws the live view until ctx ends; everything stops on return.
func Run(ctx context.Context, o Options) error {
	if err := testenv.CheckBinaries(); err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	opts := testenv.FullCluster(o.Nodes)
	opts.Redis = true
	start := time.Now()
	env, err := testenv.Start(startCtx, opts)
	if err != nil {
		return fmt.Errorf("start local cluster: %w", err)
	}
	defer env.Stop()
	if err := copyFile(env.Kubeconfig, o.KubeconfigOut); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "swell-dev: cluster ready in %s; logs in %s\n", time.Since(start).Round(time.Millisecond), env.Dir)
	c, stopController, err := startController(ctx, env)
	if err != nil {
		return err
	}
	defer stopController()
	if err := createSample(startCtx, c, env, o); err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	defer func() { _ = rdb.Close() }()
	load := &Load{RDB: rdb, Queue: queue, Phases: scalePhases(DefaultPhases(), o.PhaseScale)}
	loadStart := time.Now()
	go func() { _ = load.Run(ctx, loadStart) }()
	fmt.Fprintf(o.Out, "\n  export KUBECONFIG=%s\n  kubectl get qworkers -w\n\n", o.KubeconfigOut)
	time.Sleep(2 * time.Second)
	return view(ctx, o, c, env, load, loadStart)
}

func scalePhases(ps []Phase, f float64) []Phase {
	if f <= 0 {
		f = 1
	}
	out := make([]Phase, len(ps))
	for i, p := range ps {
		p.Length = time.Duration(float64(p.Length) * f)
		out[i] = p
	}
	return out
}

// startController installs the CRDs and runs Swell's manager in-process.
func startController(ctx context.Context, env *testenv.Env) (client.Client, func(), error) {
	sub, err := fs.Sub(crd.Bases, "bases")
	if err != nil {
		return nil, nil, err
	}
	if err := env.InstallCRDsFS(ctx, sub); err != nil {
		return nil, nil, fmt.Errorf("install CRDs: %w", err)
	}
	logFile, err := os.Create(filepath.Join(env.Dir, "swell-controller.log"))
	if err != nil {
		return nil, nil, err
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(logFile), zap.UseDevMode(true)))
	runCtx, stop := context.WithCancel(ctx)
	mgr, err := controller.New(runCtx, env.RESTConfig, controller.Options{MetricsAddr: "0", ProbeAddr: "0", GracefulShutdown: 5 * time.Second,
		// The demo's broker listens on loopback, which the egress policy
		// refuses to ScalerConfigs unless allowed.
		Egress: egress.Config{Allow: []string{"127.0.0.1/32"}}})
	if err != nil {
		stop()
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = mgr.Start(runCtx)
	}()
	scheme, err := controller.NewScheme(qv1.AddToScheme)
	if err != nil {
		stop()
		return nil, nil, err
	}
	c, err := client.New(env.RESTConfig, client.Options{Scheme: scheme})
	if err != nil {
		stop()
		return nil, nil, err
	}
	return c, func() { stop(); <-done; _ = logFile.Close() }, nil
}

// createSample creates the ScalerConfig and the QWorker whose workers are
// `swell demo-worker` processes on the process node.
func createSample(ctx context.Context, c client.Client, env *testenv.Env, o Options) error {
	host, port, _ := strings.Cut(env.RedisAddr, ":")
	sc := &qv1.ScalerConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "redis", Namespace: namespace},
		Spec:       qv1.ScalerConfigSpec{Type: qv1.BrokerRedis, Config: qv1.ScalerConnection{Host: host, Port: port}},
	}
	if err := c.Create(ctx, sc); err != nil {
		return fmt.Errorf("create ScalerConfig: %w", err)
	}
	qw := &qv1.QWorker{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: qv1.QWorkerSpec{
			PodSpec: corev1.PodSpec{
				NodeSelector:                  map[string]string{procnode.Label: "true"},
				Tolerations:                   []corev1.Toleration{{Key: procnode.Taint, Operator: corev1.TolerationOpExists}},
				TerminationGracePeriodSeconds: ptr.To[int64](30),
				Containers: []corev1.Container{{
					Name: "worker", Image: "swell-demo-worker",
					Command: []string{o.Worker, "demo-worker", "--redis", env.RedisAddr, "--queue", queue, "--task-time", o.TaskTime.String()},
					Env: []corev1.EnvVar{{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{
						FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}},
				}},
			},
			ScaleConfig: qv1.ScaleConfig{
				ScalerConfigRef: "redis", Queue: queue, MinReplicas: 0, MaxReplicas: 20, ScalingFactor: 0.1,
				PollingIntervalSeconds: ptr.To[int32](1),
			},
		},
	}
	if err := c.Create(ctx, qw); err != nil {
		return fmt.Errorf("create QWorker: %w", err)
	}
	return nil
}

// view redraws the live view every Refresh until ctx ends.
func view(ctx context.Context, o Options, c client.Client, env *testenv.Env, load *Load, start time.Time) error {
	tick := time.NewTicker(o.Refresh)
	defer tick.Stop()
	var history []Point
	lastSent, lastAt := load.Sent.Load(), time.Now()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(o.Out, "\nswell-dev: stopping")
			return nil
		case now := <-tick.C:
			sent := load.Sent.Load()
			rate := float64(sent-lastSent) / now.Sub(lastAt).Seconds()
			lastSent, lastAt = sent, now
			s := snapshot(ctx, c, env)
			s.Elapsed, s.Phase, s.Sent, s.ArrivalRate = now.Sub(start), load.CurrentPhase(), sent, rate
			history = append(history, Point{Desired: s.Desired, Backlog: s.Backlog})
			if len(history) > 60 {
				history = history[1:]
			}
			s.History = history
			fmt.Fprint(o.Out, Render(s))
		}
	}
}

// snapshot reads the QWorker's status and its recent events.
func snapshot(ctx context.Context, c client.Client, env *testenv.Env) Snapshot {
	var s Snapshot
	qw := &qv1.QWorker{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, qw); err != nil {
		s.Err = err.Error()
		return s
	}
	st := qw.Status
	s.Desired, s.Current, s.Ready = st.DesiredReplicas, st.CurrentReplicas, st.ReadyReplicas
	if st.Backlog != nil {
		s.Backlog = *st.Backlog
	}
	if st.LastDecision != nil {
		s.Decision = fmt.Sprintf("%s (%s ago)", st.LastDecision.Reason, time.Since(st.LastDecision.Time.Time).Round(time.Second))
	}
	evs, err := env.Clientset.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		s.Err = err.Error()
		return s
	}
	items := evs.Items
	sort.Slice(items, func(i, j int) bool { return eventTime(items[i]).After(eventTime(items[j])) })
	for i := 0; i < len(items) && i < 6; i++ {
		e := items[i]
		s.Events = append(s.Events, fmt.Sprintf("%s  %-12s %s", eventTime(e).Format("15:04:05"), e.Reason, e.Message))
	}
	return s
}

func eventTime(e corev1.Event) time.Time {
	if !e.LastTimestamp.IsZero() {
		return e.LastTimestamp.Time
	}
	if !e.EventTime.IsZero() {
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("read %s: %w", from, err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", to, err)
	}
	return nil
}
