package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/swell-autoscaler/swell/pkg/cpa"
)

// The CPA suite runs the autoscalers under examples/cpa with `swell cpa`'s
// code in process, against a Deployment on kwok nodes. Intervals are 200 ms
// and every assertion polls for behaviour.

const cpaAnnotation = "swell.dev/example-replicas"

func TestCPAShellPerResourceScalesUpAndDownAndHooksSeeCPAJSON(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	dir := exampleStateDir(t)
	createCPADeployment(ctx, t, ns, "shell", 1, "3")
	cfg := loadCPAExample(t, "shell-per-resource", ns, "shell", nil)
	startCPA(t, cfg)

	waitReplicas(ctx, t, ns, "shell", 3)
	waitReadyReplicas(ctx, t, ns, "shell", 3)
	waitEvent(ctx, t, ns, "shell", cpa.ReasonSuccessfulRescale)

	hooks := map[string][]string{
		"preMetric":    {"resource", "runType"},
		"postMetric":   {"resource", "runType", "metrics"},
		"preEvaluate":  {"resource", "runType", "metrics"},
		"postEvaluate": {"resource", "runType", "metrics", "evaluation"},
		"preScale":     {"evaluation", "resource", "minReplicas", "maxReplicas", "targetReplicas", "namespace", "scaleTargetRef", "runType"},
		"postScale":    {"evaluation", "resource", "minReplicas", "maxReplicas", "targetReplicas", "namespace", "scaleTargetRef", "runType"},
	}
	for hook, keys := range hooks {
		in := readHookInput(ctx, t, dir, hook)
		for _, k := range keys {
			if _, ok := in[k]; !ok {
				t.Errorf("%s input lacks %q: %v", hook, k, in)
			}
		}
		if in["runType"] != cpa.RunTypeScaler {
			t.Errorf("%s runType = %v, want scaler", hook, in["runType"])
		}
	}
	post := readHookInput(ctx, t, dir, "postMetric")
	if res := post["resource"].(map[string]any); res["kind"] != "Deployment" || res["metadata"].(map[string]any)["name"] != "shell" {
		t.Errorf("postMetric resource = %v, want the Deployment", res)
	}
	if m := post["metrics"].([]any)[0].(map[string]any); m["resource"] != "shell" || m["value"] != "3\n" {
		t.Errorf("postMetric metrics[0] = %v, want {shell, \"3\\n\"}", m)
	}
	if ref := readHookInput(ctx, t, dir, "preScale")["scaleTargetRef"].(map[string]any); ref["kind"] != "Deployment" || ref["name"] != "shell" {
		t.Errorf("preScale scaleTargetRef = %v", ref)
	}

	annotate(ctx, t, ns, "shell", "1")
	waitReplicas(ctx, t, ns, "shell", 1)
}

func TestCPAPythonPerPodScalesUpAndDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	dir := exampleStateDir(t)
	writeFile(t, filepath.Join(dir, "load"), "35")
	createCPADeployment(ctx, t, ns, "py", 2, "")
	waitReadyReplicas(ctx, t, ns, "py", 2)
	startCPA(t, loadCPAExample(t, "python-per-pod", ns, "py", nil))

	waitReplicas(ctx, t, ns, "py", 4)
	metrics := readHookInput(ctx, t, dir, "postMetric")["metrics"].([]any)
	for _, m := range metrics {
		m := m.(map[string]any)
		if !strings.HasPrefix(m["resource"].(string), "py-") || !strings.Contains(m["value"].(string), `"load": 35`) {
			t.Errorf("per-pod metric %v: want a pod of py reporting load 35", m)
		}
	}
	if len(metrics) < 2 {
		t.Errorf("postMetric saw %d pod metrics, want one per pod (>= 2)", len(metrics))
	}
	writeFile(t, filepath.Join(dir, "load"), "5")
	waitReplicas(ctx, t, ns, "py", 1)
}

func TestCPAHTTPEvaluatorScalesUpAndDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	exampleStateDir(t)
	var want atomic.Int32
	want.Store(4)
	var sawRunType atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in cpa.EvaluateInfo
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || r.Method != http.MethodPost {
			http.Error(w, "bad input", http.StatusBadRequest)
			return
		}
		sawRunType.Store(in.RunType)
		fmt.Fprintf(w, `{"targetReplicas": %d}`, want.Load())
	}))
	defer srv.Close()
	createCPADeployment(ctx, t, ns, "web", 1, "1")
	evaluate := fmt.Sprintf(`{"type": "http", "timeout": 2000, "http": {"method": "POST", "url": %q, "successCodes": [200], "parameterMode": "body"}}`, srv.URL+"/evaluate")
	startCPA(t, loadCPAExample(t, "http-evaluator", ns, "web", map[string]string{"evaluate": evaluate}))

	waitReplicas(ctx, t, ns, "web", 4)
	if sawRunType.Load() != cpa.RunTypeScaler {
		t.Errorf("evaluator saw runType %v, want scaler", sawRunType.Load())
	}
	want.Store(2)
	waitReplicas(ctx, t, ns, "web", 2)
}

// TestCPAFailedTicksHoldReplicasAndRecover: every kind of broken user logic
// fails the tick visibly (a Warning event on the Deployment, the failure
// gauge) and never scales; the next good tick scales as usual.
func TestCPAFailedTicksHoldReplicasAndRecover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	faulty := fmt.Sprintf(`{"type": "shell", "timeout": 300, "shell": {"entrypoint": "/bin/sh", "command": [%q]}}`, filepath.Join(examplesDir(t), "faulty", "evaluate.sh"))
	cases := []struct {
		name, mode, reason, message string
	}{
		{"timeout", "sleep", cpa.ReasonFailedEvaluate, "timed out after 300ms"},
		{"non-zero-exit", "fail", cpa.ReasonFailedEvaluate, "exit code 3"},
		{"garbage", "garbage", cpa.ReasonFailedEvaluate, "not a JSON object"},
		{"no-target-replicas", "empty", cpa.ReasonFailedEvaluate, "no targetReplicas"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := exampleStateDir(t)
			writeFile(t, filepath.Join(dir, "mode"), c.mode)
			createCPADeployment(ctx, t, ns, c.name, 2, "4")
			reg := startCPA(t, loadCPAExample(t, "shell-per-resource", ns, c.name, map[string]string{"evaluate": faulty, "minReplicas": "0"}))
			assertHeldThenRecovers(ctx, t, ns, c.name, reg, c.reason, c.message, func() {
				writeFile(t, filepath.Join(dir, "mode"), "ok")
			})
		})
	}
	t.Run("unreachable-http", func(t *testing.T) {
		exampleStateDir(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		evaluate := fmt.Sprintf(`{"type": "http", "timeout": 1000, "http": {"method": "POST", "url": "http://%s/evaluate", "successCodes": [200], "parameterMode": "body"}}`, addr)
		createCPADeployment(ctx, t, ns, "unreachable", 2, "4")
		reg := startCPA(t, loadCPAExample(t, "http-evaluator", ns, "unreachable", map[string]string{"evaluate": evaluate}))
		assertHeldThenRecovers(ctx, t, ns, "unreachable", reg, cpa.ReasonFailedEvaluate, "connection refused", func() {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("listen again on %s: %v", addr, err)
			}
			srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, `{"targetReplicas": 4}`)
			})}
			go func() { _ = srv.Serve(l) }()
			t.Cleanup(func() { _ = srv.Close() })
		})
	})
}

// TestCPARequiredKubernetesMetricsUnavailable: the target's pods run on kwok
// nodes, which metrics-server cannot scrape, so requireKubernetesMetrics=true
// must fail each tick visibly and hold the count. (Real metrics reaching
// user logic: TestCPAReceivesRealResourceMetrics.)
func TestCPARequiredKubernetesMetricsUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	exampleStateDir(t)
	createCPADeployment(ctx, t, ns, "needs-metrics", 2, "5")
	reg := startCPA(t, loadCPAExample(t, "shell-per-resource", ns, "needs-metrics", map[string]string{
		"kubernetesMetricSpecs":    `[{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}]`,
		"requireKubernetesMetrics": "true",
	}))
	waitEvent(ctx, t, ns, "needs-metrics", cpa.ReasonFailedKubernetesMetrics)
	waitFor(ctx, t, "3 consecutive failed ticks", func() (bool, error) {
		return gaugeValue(t, reg, "swell_cpa_consecutive_failures") >= 3, nil
	})
	if got := replicasOf(ctx, t, ns, "needs-metrics"); got != 2 {
		t.Fatalf("replicas = %d, want 2: a tick without required metrics must not scale", got)
	}
}

func TestCPARESTAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	exampleStateDir(t)
	createCPADeployment(ctx, t, ns, "api", 1, "5")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	// A long interval keeps the loop out of the way: only the API scales.
	cfg := loadCPAExample(t, "shell-per-resource", ns, "api", map[string]string{
		"interval":  "3600000",
		"apiConfig": fmt.Sprintf(`{"enabled": true, "host": "127.0.0.1", "port": %d}`, port),
	})
	a, _ := newCPA(t, cfg)
	apiCtx, stopAPI := context.WithCancel(context.Background())
	t.Cleanup(stopAPI)
	go func() {
		_ = cpa.ServeAPI(apiCtx, *cfg.APIConfig, a.APIHandler(), cpa.APIAccess{}, slog.New(slog.DiscardHandler))
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(ctx, t, "the REST API to listen", func() (bool, error) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			_ = c.Close()
		}
		return err == nil, nil
	})

	steps := []struct {
		method, path string
		code         int
		body         string
		replicas     int32
	}{
		{"GET", "/api/v1/metrics", 200, `[{"resource":"api","value":"5\n"}]`, 1},
		{"GET", "/api/v1/metrics?dry_run=true", 200, `[{"resource":"api","value":"5\n"}]`, 1},
		{"POST", "/api/v1/evaluation?dry_run=true", 200, `{"targetReplicas":5}`, 1},
		{"POST", "/api/v1/evaluation?dry_run=yes", 400, `{"message":"Invalid format for 'dry_run' query parameter; 'yes' is not a valid boolean value","code":400}`, 1},
		{"GET", "/api/v1/evaluation", 405, `{"message":"Method 'GET' not allowed on resource '/api/v1/evaluation'","code":405}`, 1},
		{"DELETE", "/api/v1/metrics", 405, `"code":405`, 1},
		{"GET", "/api/v2/metrics", 404, `{"message":"Resource '/api/v2/metrics' not found","code":404}`, 1},
		{"POST", "/api/v1/evaluation", 200, `{"targetReplicas":5}`, 5},
	}
	for _, s := range steps {
		code, body := httpDo(ctx, t, s.method, base+s.path)
		if code != s.code || !strings.Contains(body, s.body) {
			t.Errorf("%s %s = %d %s, want %d %s", s.method, s.path, code, body, s.code, s.body)
		}
		if got := replicasOf(ctx, t, ns, "api"); got != s.replicas {
			t.Fatalf("after %s %s: replicas = %d, want %d", s.method, s.path, got, s.replicas)
		}
	}
	waitEvent(ctx, t, ns, "api", cpa.ReasonSuccessfulRescale)
}

// assertHeldThenRecovers waits for the failure event and three failed ticks,
// checks the count held, then fixes the logic and waits for the scale.
func assertHeldThenRecovers(ctx context.Context, t *testing.T, ns, name string, reg *prometheus.Registry, reason, message string, fix func()) {
	t.Helper()
	ev := waitEvent(ctx, t, ns, name, reason)
	if ev.Type != corev1.EventTypeWarning || !strings.Contains(ev.Message, message) {
		t.Errorf("event %s %q: want a Warning mentioning %q", ev.Type, ev.Message, message)
	}
	waitFor(ctx, t, "3 consecutive failed ticks", func() (bool, error) {
		return gaugeValue(t, reg, "swell_cpa_consecutive_failures") >= 3, nil
	})
	if got := replicasOf(ctx, t, ns, name); got != 2 {
		t.Fatalf("replicas = %d after failed ticks, want 2 (held)", got)
	}
	fix()
	waitReplicas(ctx, t, ns, name, 4)
	waitEvent(ctx, t, ns, name, cpa.ReasonSuccessfulRescale)
	// The gauge resets when the whole pass ends, after the postScale hook,
	// which may still be running when the new count shows.
	waitFor(ctx, t, "the consecutive-failure gauge back to 0 after recovery", func() (bool, error) {
		return gaugeValue(t, reg, "swell_cpa_consecutive_failures") == 0, nil
	})
}

// examplesDir is examples/cpa of this checkout.
func examplesDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("..", "..", "examples", "cpa"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// exampleStateDir gives the example scripts a private directory for this
// test (hook inputs, load, mode).
func exampleStateDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	t.Setenv("SWELL_CPA_EXAMPLE_DIR", d)
	return d
}

// loadCPAExample loads an example's config.yaml through cpa.Load, with the
// environment overriding keys as a CPA deployment would, and points the
// image paths (/cpa/...) at this checkout.
func loadCPAExample(t *testing.T, name, ns, target string, env map[string]string) *cpa.Config {
	t.Helper()
	vars := map[string]string{
		"interval":       "200",
		"namespace":      ns,
		"scaleTargetRef": fmt.Sprintf(`{"apiVersion": "apps/v1", "kind": "Deployment", "name": %q}`, target),
		"apiConfig":      `{"enabled": false}`,
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := cpa.Load(filepath.Join(examplesDir(t), name, "config.yaml"), func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	})
	if err != nil {
		t.Fatalf("load example %s: %v", name, err)
	}
	root := examplesDir(t) + "/"
	for _, m := range []*cpa.Method{cfg.Metric, cfg.Evaluate, cfg.PreMetric, cfg.PostMetric, cfg.PreEvaluate, cfg.PostEvaluate, cfg.PreScale, cfg.PostScale} {
		if m == nil || m.Shell == nil {
			continue
		}
		for i, arg := range m.Shell.Command {
			if rest, ok := strings.CutPrefix(arg, "/cpa/"); ok {
				m.Shell.Command[i] = root + rest
			}
		}
	}
	return cfg
}

// newCPA builds a runner for cfg against the test cluster.
func newCPA(t *testing.T, cfg *cpa.Config) (*cpa.Autoscaler, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, stop, err := cpa.NewForCluster(env.RESTConfig, cfg, cpa.ClusterOptions{Registerer: reg, Logger: log})
	if err != nil {
		t.Fatalf("new cpa: %v", err)
	}
	t.Cleanup(stop)
	return a, reg
}

// startCPA runs the loop until the test ends.
func startCPA(t *testing.T, cfg *cpa.Config) *prometheus.Registry {
	t.Helper()
	a, reg := newCPA(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return reg
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func createCPADeployment(ctx context.Context, t *testing.T, ns, name string, replicas int32, want string) {
	t.Helper()
	labels := map[string]string{"app": name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}}},
			},
		},
	}
	if want != "" {
		dep.Annotations = map[string]string{cpaAnnotation: want}
	}
	if _, err := env.Clientset.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment %s: %v", name, err)
	}
}

func annotate(ctx context.Context, t *testing.T, ns, name, want string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, cpaAnnotation, want)
	if _, err := env.Clientset.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("annotate %s: %v", name, err)
	}
}

func replicasOf(ctx context.Context, t *testing.T, ns, name string) int32 {
	t.Helper()
	d, err := env.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get deployment %s: %v", name, err)
	}
	return ptr.Deref(d.Spec.Replicas, 1)
}

func waitReplicas(ctx context.Context, t *testing.T, ns, name string, want int32) {
	t.Helper()
	waitFor(ctx, t, fmt.Sprintf("deployment %s at %d replicas", name, want), func() (bool, error) {
		return replicasOf(ctx, t, ns, name) == want, nil
	})
}

func waitReadyReplicas(ctx context.Context, t *testing.T, ns, name string, want int32) {
	t.Helper()
	waitFor(ctx, t, fmt.Sprintf("deployment %s with %d ready pods", name, want), func() (bool, error) {
		d, err := env.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == want, err
	})
}

// waitEvent waits for an event with reason on the Deployment and returns it.
func waitEvent(ctx context.Context, t *testing.T, ns, name, reason string) corev1.Event {
	t.Helper()
	var found corev1.Event
	waitFor(ctx, t, fmt.Sprintf("event %s on deployment %s", reason, name), func() (bool, error) {
		l, err := env.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false, err
		}
		for _, e := range l.Items {
			if e.Reason == reason && e.InvolvedObject.Kind == "Deployment" {
				found = e
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

func readHookInput(ctx context.Context, t *testing.T, dir, hook string) map[string]any {
	t.Helper()
	var in map[string]any
	waitFor(ctx, t, hook+" hook input", func() (bool, error) {
		b, err := os.ReadFile(filepath.Join(dir, hook+".json"))
		if err != nil {
			return false, err
		}
		return json.Unmarshal(b, &in) == nil, nil
	})
	return in
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) > 0 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

func httpDo(ctx context.Context, t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
