package podautoscaler

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/cpa"
	"github.com/swell-autoscaler/swell/pkg/egress"
)

const secretBody = "AKIA-internal-credential-0123456789"

// serveOn starts a server on addr that answers status with secretBody and
// counts its requests.
func serveOn(t *testing.T, addr string, status int) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(secretBody))
	}))
	_ = srv.Listener.Close()
	srv.Listener = lis
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &n
}

func method(url string) *cpa.Method {
	return httpMethod(swellHTTP(url))
}

func TestHTTPRunnerRefusesInternalAddresses(t *testing.T) {
	internal, hits := serveOn(t, "127.0.0.2:0", http.StatusOK)
	p, err := egress.New(context.Background(), egress.Config{Allow: []string{"127.0.0.1/32"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = newHTTPRunner(p).Run(context.Background(), method(internal.URL+"/latest/meta-data"), []byte(`{"resource":{}}`))
	var re *egress.RefusedError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "loopback") || !strings.Contains(err.Error(), "--egress-allow") {
		t.Fatalf("Run = %v, want a refusal naming loopback and --egress-allow", err)
	}
	if strings.Contains(err.Error(), "resource") {
		t.Fatalf("the refusal repeats the request's input: %v", err)
	}
	if hits.Load() != 0 {
		t.Fatalf("the internal server received %d requests", hits.Load())
	}
}

func TestHTTPRunnerErrorsNeverQuoteTheAnswer(t *testing.T) {
	p, _ := egress.New(context.Background(), egress.Config{Allow: []string{"127.0.0.1/32"}})
	bad, _ := serveOn(t, "127.0.0.1:0", http.StatusForbidden)
	_, err := newHTTPRunner(p).Run(context.Background(), method(bad.URL), nil)
	if err == nil || !strings.Contains(err.Error(), "status 403 not in successCodes") || strings.Contains(err.Error(), "AKIA") {
		t.Fatalf("Run = %v, want the status and nothing of the answer", err)
	}
	ok, _ := serveOn(t, "127.0.0.1:0", http.StatusOK)
	out, err := newHTTPRunner(p).Run(context.Background(), method(ok.URL), nil)
	if err != nil || out != secretBody {
		t.Fatalf("Run = %q, %v; want the answer returned to the pass", out, err)
	}
	// The answer goes no further than the pass: not a number, so the
	// expression fails by size, and the status shows its size only.
	_, err = sumMetrics([]cpa.ResourceMetric{{Resource: "web", Value: out}})
	if err == nil || strings.Contains(err.Error(), "AKIA") || !strings.Contains(err.Error(), "35 bytes") {
		t.Fatalf("sumMetrics = %v, want an error giving the size, not the answer", err)
	}
	if in := inputs([]cpa.ResourceMetric{{Resource: "web", Value: out}, {Resource: "api", Value: " 12\n"}}); strings.Contains(strings.Join(in, ","), "AKIA") || in[1] != "api=12" {
		t.Fatalf("inputs = %q, want sizes for non-numbers and numbers as they are", in)
	}
	for _, answer := range []string{secretBody, `{"targetReplicas": 2} ` + secretBody, `{"other": "` + secretBody + `"}`} {
		if _, err := parseEvaluation(answer); err == nil || strings.Contains(err.Error(), "AKIA") {
			t.Fatalf("parseEvaluation = %v, want an error without the answer", err)
		}
	}
	if n, err := parseEvaluation(`{"targetReplicas": 4}`); err != nil || n != 4 {
		t.Fatalf("parseEvaluation = %d, %v", n, err)
	}
}

func TestMethodsReceiveAViewUnlessOptedIn(t *testing.T) {
	deploy := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "web", "namespace": "ns", "labels": map[string]any{"app": "web"},
			"annotations": map[string]any{"kubectl.kubernetes.io/last-applied-configuration": "{...DB_PASSWORD...}"}},
		"spec": map[string]any{"replicas": int64(2), "selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
			"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"env": []any{map[string]any{"name": "DB_PASSWORD", "value": "hunter2"}}}}}}},
		"status": map[string]any{"replicas": int64(2), "readyReplicas": int64(2)},
	}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "ns", Annotations: map[string]string{"secret": "hunter2"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Env: []corev1.EnvVar{{Name: "DB_PASSWORD", Value: "hunter2"}}}}},
		Status:     corev1.PodStatus{PodIP: "10.1.2.3", Phase: corev1.PodRunning},
	}
	r := &Reconciler{}
	for name, got := range map[string]any{"target": r.targetResource(deploy), "pod": r.podResource(pod)} {
		b := mustJSON(t, got)
		if strings.Contains(b, "hunter2") || strings.Contains(b, "DB_PASSWORD") {
			t.Errorf("%s view carries the spec or annotations: %s", name, b)
		}
		for _, want := range []string{`"namespace":"ns"`, `"status":`} {
			if !strings.Contains(b, want) {
				t.Errorf("%s view lacks %s: %s", name, want, b)
			}
		}
	}
	if b := mustJSON(t, r.targetResource(deploy)); !strings.Contains(b, `"replicas":2`) || !strings.Contains(b, `"matchLabels"`) {
		t.Errorf("target view lacks spec.replicas or spec.selector: %s", b)
	}
	if b := mustJSON(t, r.podResource(pod)); !strings.Contains(b, `"podIP":"10.1.2.3"`) || !strings.Contains(b, `"kind":"Pod"`) {
		t.Errorf("pod view lacks status.podIP or kind: %s", b)
	}
	full := &Reconciler{FullResource: true}
	if b := mustJSON(t, full.targetResource(deploy)) + mustJSON(t, full.podResource(pod)); strings.Count(b, "hunter2") != 3 {
		t.Errorf("opted-in full resources are not whole: %s", b)
	}
}

func swellHTTP(url string) swellv1.HTTPMethod { return swellv1.HTTPMethod{URL: url} }

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
