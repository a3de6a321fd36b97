package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/swell-autoscaler/swell/internal/procnode"
	"github.com/swell-autoscaler/swell/pkg/cpa"
)

// The CPA examples suite runs the autoscalers under examples/cpa that were
// written from the behaviour CPA's own example READMEs describe (zero
// scaler, http request, downscale stabilisation, a custom resource through
// its scale subresource, Kubernetes cpu metrics), with `swell cpa`'s code in
// process against the test control plane. Each test ends at the count the
// README states and checks the transitions on the way from watch events.
// The python evaluator, per-pod metrics and hooks are also covered by
// TestCPAPythonPerPodScalesUpAndDown and
// TestCPAShellPerResourceScalesUpAndDownAndHooksSeeCPAJSON (cpa_test.go),
// and CPA's post-scale-hook example by TestCPAExamplePostScaleHook
// (cpa_post_scale_hook_test.go).

// TestCPAExampleZeroScaler: README — the Deployment starts at 3 with label
// numPods "0" and is scaled to 0 (minReplicas 0 allows it), then scales
// back from 0 when the label says so.
func TestCPAExampleZeroScaler(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	exampleStateDir(t)
	createLabelledDeployment(ctx, t, ns, "hello-kubernetes", 3, map[string]string{"numPods": "0"})
	waitReadyReplicas(ctx, t, ns, "hello-kubernetes", 3)
	seen := watchReplicas(ctx, t, ns, "hello-kubernetes")
	startCPA(t, loadCPAExample(t, "zero-scaler", ns, "hello-kubernetes", nil))

	waitReplicas(ctx, t, ns, "hello-kubernetes", 0)
	waitReadyReplicas(ctx, t, ns, "hello-kubernetes", 0)
	t.Logf("zero-scaler: numPods 0 -> %d replicas", replicasOf(ctx, t, ns, "hello-kubernetes"))
	up := rand.N(4) + 2 // 2..5
	relabel(ctx, t, ns, "hello-kubernetes", strconv.Itoa(up))
	waitReplicas(ctx, t, ns, "hello-kubernetes", int32(up))
	waitReadyReplicas(ctx, t, ns, "hello-kubernetes", int32(up))
	t.Logf("zero-scaler: numPods %d -> %d replicas (from zero)", up, replicasOf(ctx, t, ns, "hello-kubernetes"))
	seen.expect(t, 3, 0, int32(up))
}

// TestCPAExampleHTTPRequest: README — metric gathering is an HTTP GET that
// answers a plain integer between 1 and 5, the CPA input rides in the
// `value` query parameter, and the evaluator scales to the integer.
func TestCPAExampleHTTPRequest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	exampleStateDir(t)
	var number atomic.Int32
	first := int32(rand.N(4) + 2) // 2..5: a change from the Deployment's 1
	number.Store(first)
	var mu sync.Mutex
	var lastQuery map[string]any
	var badRequests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var in map[string]any
		if r.Method != http.MethodGet || q.Get("num") != "1" || q.Get("min") != "1" || q.Get("max") != "5" || json.Unmarshal([]byte(q.Get("value")), &in) != nil {
			badRequests.Add(1)
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		lastQuery = in
		mu.Unlock()
		fmt.Fprintf(w, "%d\n", number.Load())
	}))
	defer srv.Close()
	createLabelledDeployment(ctx, t, ns, "hello-kubernetes", 1, nil)
	seen := watchReplicas(ctx, t, ns, "hello-kubernetes")
	metric := fmt.Sprintf(`{"type": "http", "timeout": 2500, "http": {"method": "GET", "url": %q, "successCodes": [200], "parameterMode": "query"}}`,
		srv.URL+"/integers/?num=1&min=1&max=5&col=1&base=10&format=plain")
	startCPA(t, loadCPAExample(t, "http-request", ns, "hello-kubernetes", map[string]string{"metric": metric}))

	waitReplicas(ctx, t, ns, "hello-kubernetes", first)
	t.Logf("http-request: service answered %d -> %d replicas", first, replicasOf(ctx, t, ns, "hello-kubernetes"))
	second := first - 1 // 1..4, a scale-down
	number.Store(second)
	waitReplicas(ctx, t, ns, "hello-kubernetes", second)
	t.Logf("http-request: service answered %d -> %d replicas", second, replicasOf(ctx, t, ns, "hello-kubernetes"))
	seen.expect(t, 1, first, second)

	mu.Lock()
	defer mu.Unlock()
	if lastQuery["runType"] != cpa.RunTypeScaler {
		t.Errorf("value query parameter runType = %v, want scaler", lastQuery["runType"])
	}
	if res, _ := lastQuery["resource"].(map[string]any); res["kind"] != "Deployment" {
		t.Errorf("value query parameter resource = %v, want the Deployment", lastQuery["resource"])
	}
	if n := badRequests.Load(); n != 0 {
		t.Errorf("%d requests lacked the URL's parameters or a JSON value", n)
	}
}

// TestCPAExampleDownscaleStabilization: README — the simple pod metrics
// autoscaler with downscaleStabilization set (given as an environment
// variable, as the README's cpa.yaml does): each idle pod reports 5
// available, more than 5 in total removes a pod, and during the window the
// highest evaluation is applied, so 3 idle pods step down to 2 and are held
// there while evaluations already ask for 1. A busy pod (none available)
// adds one at once: scale-ups are not delayed.
func TestCPAExampleDownscaleStabilization(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	exampleStateDir(t)
	const window = 4 // seconds
	createLabelledDeployment(ctx, t, ns, "flask-metric", 3, nil)
	waitReadyReplicas(ctx, t, ns, "flask-metric", 3)
	seen := watchReplicas(ctx, t, ns, "flask-metric")
	reg := startCPA(t, loadCPAExample(t, "downscale-stabilization", ns, "flask-metric", map[string]string{
		"interval": "200", "downscaleStabilization": strconv.Itoa(window),
	}))

	waitReplicas(ctx, t, ns, "flask-metric", 2)
	atTwo := time.Now()
	heldPasses := map[float64]bool{} // passes that evaluated 1 while 2 was applied
	waitFor(ctx, t, "flask-metric at 1 replica", func() (bool, error) {
		passes := cpaCounterValue(t, reg, "swell_cpa_passes_total")
		if gaugeValue(t, reg, "swell_cpa_evaluated_replicas") == 1 && gaugeValue(t, reg, "swell_cpa_desired_replicas") == 2 &&
			cpaCounterValue(t, reg, "swell_cpa_passes_total") == passes {
			heldPasses[passes] = true
		}
		return replicasOf(ctx, t, ns, "flask-metric") == 1, nil
	})
	held := time.Since(atTwo)
	t.Logf("downscale-stabilization: held at 2 for %s over %d passes that evaluated 1 (window %ds), then 1", held.Round(100*time.Millisecond), len(heldPasses), window)
	// How many passes fit in the window depends on how fast the machine
	// runs the example's Python per pod; one is enough to show the hold.
	if len(heldPasses) < 1 {
		t.Errorf("saw no pass evaluating 1 while 2 was applied; the window must hold the higher evaluation")
	}
	if held < (window-1)*time.Second {
		t.Errorf("scaled 2 -> 1 after %s, inside the %ds window", held, window)
	}

	waitReadyReplicas(ctx, t, ns, "flask-metric", 1)
	pods := podsOf(ctx, t, ns, "flask-metric")
	for _, p := range pods {
		patch := `{"metadata":{"annotations":{"swell.dev/example-value":"5"}}}`
		if _, err := env.Clientset.CoreV1().Pods(ns).Patch(ctx, p.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitReplicas(ctx, t, ns, "flask-metric", 2)
	t.Logf("downscale-stabilization: busy pod (0 available) -> %d replicas at once", replicasOf(ctx, t, ns, "flask-metric"))
	seen.expect(t, 3, 2, 1, 2)
}

// TestCPAExampleCRDTarget: README (argo-rollouts) — a custom resource with a
// scale subresource, created with 2 replicas and label numPods "5", is
// scaled to 5 through its scale subresource, and follows the label.
func TestCPAExampleCRDTarget(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	exampleStateDir(t)
	if err := env.InstallCRDs(ctx, filepath.Join(examplesDir(t), "crd-target", "crd")); err != nil {
		t.Fatalf("install the example CRD: %v", err)
	}
	dyn, err := dynamic.NewForConfig(env.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: "example.swell.dev", Version: "v1alpha1", Resource: "rollouts"}
	rollouts := dyn.Resource(gvr).Namespace(ns)
	b, err := os.ReadFile(filepath.Join(examplesDir(t), "crd-target", "rollout.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(b, &obj.Object); err != nil {
		t.Fatal(err)
	}
	if _, err := rollouts.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create rollout: %v", err)
	}
	scaleOf := func() int32 {
		s, err := rollouts.Get(ctx, "rollouts-demo", metav1.GetOptions{}, "scale")
		if err != nil {
			t.Fatalf("get rollout scale: %v", err)
		}
		n, _, _ := unstructured.NestedInt64(s.Object, "spec", "replicas")
		return int32(n)
	}
	if got := scaleOf(); got != 2 {
		t.Fatalf("rollout starts at %d, want 2", got)
	}
	cfg := loadCPAExample(t, "crd-target", ns, "rollouts-demo", map[string]string{
		"scaleTargetRef": `{"apiVersion": "example.swell.dev/v1alpha1", "kind": "Rollout", "name": "rollouts-demo"}`,
	})
	startCPA(t, cfg)

	waitFor(ctx, t, "rollout at 5 replicas", func() (bool, error) { return scaleOf() == 5, nil })
	t.Logf("crd-target: Rollout numPods 5 -> scale subresource spec.replicas %d", scaleOf())
	r, err := rollouts.Get(ctx, "rollouts-demo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n, _, _ := unstructured.NestedInt64(r.Object, "spec", "replicas"); n != 5 {
		t.Errorf("rollout spec.replicas = %d, want 5 (written through the scale subresource)", n)
	}
	patch := `{"metadata":{"labels":{"numPods":"3"}}}`
	if _, err := rollouts.Patch(ctx, "rollouts-demo", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "rollout at 3 replicas", func() (bool, error) { return scaleOf() == 3, nil })
	t.Logf("crd-target: Rollout numPods 3 -> %d", scaleOf())
	waitFor(ctx, t, "a SuccessfulRescale event on the Rollout", func() (bool, error) {
		l, err := env.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=rollouts-demo"})
		if err != nil {
			return false, err
		}
		for _, e := range l.Items {
			if e.Reason == cpa.ReasonSuccessfulRescale && e.InvolvedObject.Kind == "Rollout" {
				return true, nil
			}
		}
		return false, nil
	})
}

// TestCPAExampleK8sMetricsCPUWithAFailingPodsMetric: README (k8s-metrics-cpu)
// — busy pods' real cpu use from metrics-server drives the count up. The
// config also asks for a Pods metric that no adapter serves, with
// requireKubernetesMetrics false: as in CPA, the metric script still gets
// the cpu metric (the failed one is left out), so the pass goes on and the
// Deployment scales to maxReplicas.
func TestCPAExampleK8sMetricsCPUWithAFailingPodsMetric(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	exampleStateDir(t)
	const maxReplicas = 3
	labels := map[string]string{"app": "php-apache"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "php-apache", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{procnode.Label: "true"},
					Tolerations:  []corev1.Toleration{{Key: procnode.Taint, Operator: corev1.TolerationOpExists}},
					Containers: []corev1.Container{{
						// A niced busy loop: uses far more than its 10m request
						// without starving the machine.
						Name: "burn", Image: "local", Command: []string{"/usr/bin/nice", "-n", "19", "/bin/sh", "-c", "while :; do :; done"},
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}},
					}},
				},
			},
		},
	}
	if _, err := env.Clientset.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitReadyReplicas(ctx, t, ns, "php-apache", 1)
	seen := watchReplicas(ctx, t, ns, "php-apache")
	reg := startCPA(t, loadCPAExample(t, "k8s-metrics-cpu", ns, "php-apache", map[string]string{
		"interval":    "1000",
		"maxReplicas": strconv.Itoa(maxReplicas),
		"kubernetesMetricSpecs": `[{"type": "Pods", "pods": {"metric": {"name": "no_such_metric"}, "target": {"type": "AverageValue", "averageValue": "1"}}},
		                           {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]`,
		"requireKubernetesMetrics": "false",
	}))

	// metrics-server needs two scrapes (~20 s) before it reports a pod.
	waitReplicas(ctx, t, ns, "php-apache", maxReplicas)
	t.Logf("k8s-metrics-cpu: busy pods -> %d replicas (maxReplicas), %v Kubernetes metrics failures counted",
		replicasOf(ctx, t, ns, "php-apache"), cpaCounterValue(t, reg, "swell_cpa_kubernetes_metrics_failures_total"))
	if cpaCounterValue(t, reg, "swell_cpa_kubernetes_metrics_failures_total") == 0 {
		t.Error("the unserved Pods metric was never counted as a failure")
	}
	seen.expectRising(t, 1, maxReplicas)
}

// createLabelledDeployment creates a Deployment on kwok nodes with labels on
// the Deployment itself (what the label-reading examples read).
func createLabelledDeployment(ctx context.Context, t *testing.T, ns, name string, replicas int32, labels map[string]string) {
	t.Helper()
	sel := map[string]string{"app": name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}}},
			},
		},
	}
	if _, err := env.Clientset.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment %s: %v", name, err)
	}
}

func relabel(ctx context.Context, t *testing.T, ns, name, numPods string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"labels":{"numPods":%q}}}`, numPods)
	if _, err := env.Clientset.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("relabel %s: %v", name, err)
	}
}

func podsOf(ctx context.Context, t *testing.T, ns, app string) []corev1.Pod {
	t.Helper()
	l, err := env.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// replicaHistory is every distinct spec.replicas a Deployment took, from
// watch events, in order.
type replicaHistory struct {
	mu     sync.Mutex
	values []int32
}

// watchReplicas records the Deployment's spec.replicas changes from now on
// (the current value first) until the test ends.
func watchReplicas(ctx context.Context, t *testing.T, ns, name string) *replicaHistory {
	t.Helper()
	w, err := env.Clientset.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatalf("watch deployment %s: %v", name, err)
	}
	h := &replicaHistory{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			d, ok := ev.Object.(*appsv1.Deployment)
			if !ok {
				continue
			}
			n := ptr.Deref(d.Spec.Replicas, 1)
			h.mu.Lock()
			if len(h.values) == 0 || h.values[len(h.values)-1] != n {
				h.values = append(h.values, n)
			}
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		w.Stop()
		<-done
	})
	return h
}

func (h *replicaHistory) snapshot() []int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int32(nil), h.values...)
}

// expect checks the Deployment went through exactly these counts.
func (h *replicaHistory) expect(t *testing.T, want ...int32) {
	t.Helper()
	got := h.snapshot()
	t.Logf("replica counts seen in watch events: %v", got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("replica counts seen %v, want exactly %v", got, want)
	}
}

// expectRising checks the counts went from first to last without ever
// going down.
func (h *replicaHistory) expectRising(t *testing.T, first, last int32) {
	t.Helper()
	got := h.snapshot()
	t.Logf("replica counts seen in watch events: %v", got)
	if len(got) < 2 || got[0] != first || got[len(got)-1] != last {
		t.Errorf("replica counts seen %v, want %d ... %d", got, first, last)
	}
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			t.Errorf("replica counts seen %v went down", got)
		}
	}
}

// cpaCounterValue sums a counter's series in a CPA runner's registry.
func cpaCounterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
