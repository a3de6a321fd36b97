package clusterapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// fakeAPI is a local stand-in for the API server's Cluster API endpoints
// that records every request (method, path, query, body) so the tests can
// check the exact calls the provider makes.
type fakeAPI struct {
	t        *testing.T
	mu       sync.Mutex
	reqs     []string
	bodies   map[string]string
	replicas int32
	rv       int
	// conflictOnce makes the next scale PUT answer 409.
	conflictOnce bool
	// failScalePut makes every scale PUT answer 500.
	failScalePut bool
	// failReads makes every GET answer 503 (an API server outage).
	failReads bool
	machines  []map[string]any
}

const mdPath = "/apis/cluster.x-k8s.io/v1beta2/namespaces/games/machinedeployments/pool-a"

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	line := r.Method + " " + r.URL.Path
	if r.URL.RawQuery != "" {
		line += "?" + r.URL.RawQuery
	}
	f.reqs = append(f.reqs, line)
	f.bodies[line] = string(body)
	if r.Header.Get("Accept") != "application/json" {
		f.t.Errorf("%s: Accept %q, want application/json", line, r.Header.Get("Accept"))
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case f.failReads && r.Method == http.MethodGet:
		w.WriteHeader(http.StatusServiceUnavailable)
		writeJSON(w, map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "ServiceUnavailable", "code": 503, "message": "apiserver overloaded"})
	case r.Method == http.MethodGet && r.URL.Path == "/apis/cluster.x-k8s.io":
		writeJSON(w, map[string]any{"kind": "APIGroup", "name": "cluster.x-k8s.io", "preferredVersion": map[string]any{"groupVersion": "cluster.x-k8s.io/v1beta2", "version": "v1beta2"}})
	case r.Method == http.MethodGet && r.URL.Path == mdPath:
		writeJSON(w, map[string]any{"metadata": map[string]any{"name": "pool-a", "namespace": "games", "annotations": map[string]any{CapacityCPU: "4", CapacityMemory: "16Gi"}}, "spec": map[string]any{"clusterName": "prod", "replicas": f.replicas}})
	case r.Method == http.MethodGet && r.URL.Path == mdPath+"/scale":
		writeJSON(w, f.scale())
	case r.Method == http.MethodPut && r.URL.Path == mdPath+"/scale":
		f.putScale(w, body)
	case r.Method == http.MethodGet && r.URL.Path == "/apis/cluster.x-k8s.io/v1beta2/namespaces/games/machines":
		writeJSON(w, map[string]any{"kind": "MachineList", "metadata": map[string]any{}, "items": f.machines})
	case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, "/apis/cluster.x-k8s.io/v1beta2/namespaces/games/machines/"):
		if ct := r.Header.Get("Content-Type"); ct != "application/merge-patch+json" {
			f.t.Errorf("%s: Content-Type %q", line, ct)
		}
		writeJSON(w, map[string]any{"metadata": map[string]any{"name": strings.TrimPrefix(r.URL.Path, "/apis/cluster.x-k8s.io/v1beta2/namespaces/games/machines/")}})
	default:
		w.WriteHeader(http.StatusNotFound)
		writeJSON(w, map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found: " + r.URL.Path})
	}
}

func (f *fakeAPI) scale() map[string]any {
	return map[string]any{"apiVersion": "autoscaling/v1", "kind": "Scale",
		"metadata": map[string]any{"name": "pool-a", "namespace": "games", "resourceVersion": itoa(f.rv)},
		"spec":     map[string]any{"replicas": f.replicas}, "status": map[string]any{"replicas": f.replicas, "selector": "x=y"}}
}

func (f *fakeAPI) putScale(w http.ResponseWriter, body []byte) {
	var s scale
	if err := json.Unmarshal(body, &s); err != nil {
		f.t.Errorf("scale PUT body: %v", err)
	}
	switch {
	case f.failScalePut:
		w.WriteHeader(http.StatusInternalServerError)
		writeJSON(w, map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500, "message": "etcd down"})
	case f.conflictOnce || s.Metadata.ResourceVersion != itoa(f.rv):
		f.conflictOnce = false
		f.rv++
		w.WriteHeader(http.StatusConflict)
		writeJSON(w, map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"})
	default:
		f.replicas = s.Spec.Replicas
		f.rv++
		writeJSON(w, f.scale())
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func writeJSON(w http.ResponseWriter, v any) { _ = json.NewEncoder(w).Encode(v) }

func (f *fakeAPI) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.reqs
	f.reqs = nil
	return out
}

func machineObj(name, node string, deleting bool) map[string]any {
	meta := map[string]any{"name": name, "namespace": "games", "labels": map[string]any{DeploymentNameLabel: "pool-a"}}
	if deleting {
		meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
	}
	return map[string]any{"metadata": meta, "status": map[string]any{"nodeRef": map[string]any{"name": node}}}
}

// newTest builds a provider on the clientset's discovery REST client, as
// nodepool.NewProvider does.
func newTest(t *testing.T, f *fakeAPI, cfg Config) (*Provider, error) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	cfg.REST = cs.Discovery().RESTClient()
	cfg.Now = func() time.Time { return time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC) }
	return New(context.Background(), cfg)
}

func TestNewReadsVersionAndTemplateAndChecksCluster(t *testing.T) {
	f := &fakeAPI{t: t, bodies: map[string]string{}, replicas: 2}
	p, err := newTest(t, f, Config{Namespace: "games", Name: "pool-a", ClusterName: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"GET /apis/cluster.x-k8s.io", "GET " + mdPath}
	if got := f.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("requests %q, want %q", got, want)
	}
	if p.Version() != "v1beta2" {
		t.Errorf("version %q", p.Version())
	}
	if got, want := p.Template(), (policy.Resources{"cpu": 4000, "memory": 16 << 30, "pods": 110}); !reflect.DeepEqual(got, want) {
		t.Errorf("template %v, want %v", got, want)
	}
	if _, err := newTest(t, f, Config{Namespace: "games", Name: "pool-a", ClusterName: "staging"}); err == nil || !strings.Contains(err.Error(), `belongs to cluster "prod", not "staging"`) {
		t.Errorf("wrong cluster: err %v", err)
	}
	if _, err := newTest(t, f, Config{Namespace: "games", Name: "nope", Version: "v1beta2"}); err == nil || !strings.Contains(err.Error(), "MachineDeployment games/nope") {
		t.Errorf("missing MachineDeployment: err %v", err)
	}
}

func TestSizeAndResizeUseTheScaleSubresource(t *testing.T) {
	f := &fakeAPI{t: t, bodies: map[string]string{}, replicas: 2, conflictOnce: true}
	p, err := newTest(t, f, Config{Namespace: "games", Name: "pool-a", Version: "v1beta2"})
	if err != nil {
		t.Fatal(err)
	}
	f.take()
	if n, err := p.Size(context.Background()); err != nil || n != 2 {
		t.Fatalf("Size = %d, %v", n, err)
	}
	if err := p.Resize(context.Background(), 5); err != nil {
		t.Fatal(err)
	}
	// The first PUT meets a conflict; the provider re-reads and writes again.
	want := []string{"GET " + mdPath + "/scale", "GET " + mdPath + "/scale", "PUT " + mdPath + "/scale", "GET " + mdPath + "/scale", "PUT " + mdPath + "/scale"}
	if got := f.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("requests %q, want %q", got, want)
	}
	if f.replicas != 5 {
		t.Errorf("replicas %d, want 5", f.replicas)
	}
	// Resize never shrinks.
	if err := p.Resize(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	if got := f.take(); !reflect.DeepEqual(got, []string{"GET " + mdPath + "/scale"}) || f.replicas != 5 {
		t.Errorf("shrinking resize made %q, replicas %d", got, f.replicas)
	}
}

func TestDeleteMarksExactlyTheChosenMachinesThenScalesDownOnce(t *testing.T) {
	f := &fakeAPI{t: t, bodies: map[string]string{}, replicas: 4, machines: []map[string]any{
		machineObj("m-1", "node-1", false), machineObj("m-2", "node-2", false),
		machineObj("m-3", "node-3", true), machineObj("m-4", "node-4", false),
	}}
	p, err := newTest(t, f, Config{Namespace: "games", Name: "pool-a", Version: "v1beta2"})
	if err != nil {
		t.Fatal(err)
	}
	f.take()
	nodes := []*corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "node-2"}},                                                            // found by nodeRef
		{ObjectMeta: metav1.ObjectMeta{Name: "renamed", Annotations: map[string]string{MachineAnnotation: "m-4"}}}, // found by annotation
		{ObjectMeta: metav1.ObjectMeta{Name: "node-3"}},                                                            // already deleting: skipped
	}
	if err := p.Delete(context.Background(), nodes); err != nil {
		t.Fatal(err)
	}
	machines := "GET /apis/cluster.x-k8s.io/v1beta2/namespaces/games/machines?labelSelector=cluster.x-k8s.io%2Fdeployment-name%3Dpool-a&limit=500"
	want := []string{
		machines,
		"GET " + mdPath + "/scale",
		"PATCH /apis/cluster.x-k8s.io/v1beta2/namespaces/games/machines/m-2",
		"PATCH /apis/cluster.x-k8s.io/v1beta2/namespaces/games/machines/m-4",
		"GET " + mdPath + "/scale", "PUT " + mdPath + "/scale",
	}
	if got := f.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("requests\n%q\nwant\n%q", got, want)
	}
	wantPatch := `{"metadata":{"annotations":{"cluster.x-k8s.io/delete-machine":"2026-12-07T10:00:00Z"}}}`
	if got := f.bodies[want[2]]; got != wantPatch {
		t.Errorf("patch body %s, want %s", got, wantPatch)
	}
	if f.replicas != 2 {
		t.Errorf("replicas %d, want 2 (4 minus the two marked)", f.replicas)
	}
}

// Asking again for a node whose Machine is marked, before the MachineSet
// controller acted on the first scale-down, must not lower the count
// again: that would remove a second Machine.
func TestDeleteTwiceLowersOnce(t *testing.T) {
	marked := machineObj("m-2", "node-2", false)
	marked["metadata"].(map[string]any)["annotations"] = map[string]any{DeleteMachineAnnotation: "2026-12-07T09:59:00Z"}
	f := &fakeAPI{t: t, bodies: map[string]string{}, replicas: 2, machines: []map[string]any{
		machineObj("m-1", "node-1", false), marked, machineObj("m-3", "node-3", false),
	}}
	p, err := newTest(t, f, Config{Namespace: "games", Name: "pool-a", Version: "v1beta2"})
	if err != nil {
		t.Fatal(err)
	}
	f.take()
	if err := p.Delete(context.Background(), []*corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node-2"}}}); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.take() {
		if !strings.HasPrefix(r, "GET ") {
			t.Errorf("a repeated delete sent %s", r)
		}
	}
	if f.replicas != 2 {
		t.Errorf("replicas %d, want 2 (3 Machines, 1 removal outstanding)", f.replicas)
	}
	// Once the outstanding removal is done (replicas == Machines), a
	// Machine still marked is marked again and the count lowered.
	f.replicas = 3
	if err := p.Delete(context.Background(), []*corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node-2"}}}); err != nil {
		t.Fatal(err)
	}
	if f.replicas != 2 {
		t.Errorf("replicas %d, want 2", f.replicas)
	}
}

func TestDeleteOfAnUnknownNodeLowersNothing(t *testing.T) {
	f := &fakeAPI{t: t, bodies: map[string]string{}, replicas: 2, machines: []map[string]any{machineObj("m-1", "node-1", false)}}
	p, err := newTest(t, f, Config{Namespace: "games", Name: "pool-a", Version: "v1beta2"})
	if err != nil {
		t.Fatal(err)
	}
	f.take()
	err = p.Delete(context.Background(), []*corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "stranger"}}})
	if err == nil || !strings.Contains(err.Error(), "node stranger has no Machine") {
		t.Fatalf("err %v", err)
	}
	for _, r := range f.take() {
		if !strings.HasPrefix(r, "GET ") {
			t.Errorf("an unknown node made the provider send %s", r)
		}
	}
	if f.replicas != 2 {
		t.Errorf("replicas %d, want 2", f.replicas)
	}
}

func TestDeleteUnmarksWhenTheScaleWriteFails(t *testing.T) {
	f := &fakeAPI{t: t, bodies: map[string]string{}, replicas: 2, failScalePut: true, machines: []map[string]any{machineObj("m-1", "node-1", false)}}
	p, err := newTest(t, f, Config{Namespace: "games", Name: "pool-a", Version: "v1beta2"})
	if err != nil {
		t.Fatal(err)
	}
	f.take()
	err = p.Delete(context.Background(), []*corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}})
	if err == nil || !strings.Contains(err.Error(), "etcd down") {
		t.Fatalf("err %v", err)
	}
	got := f.take()
	last := got[len(got)-1]
	if last != "PATCH /apis/cluster.x-k8s.io/v1beta2/namespaces/games/machines/m-1" {
		t.Fatalf("last request %q, want the unmark patch; all: %q", last, got)
	}
	if body := f.bodies[last]; body != `{"metadata":{"annotations":{"cluster.x-k8s.io/delete-machine":null}}}` {
		t.Errorf("unmark body %s", body)
	}
	if f.replicas != 2 {
		t.Errorf("replicas %d, want 2", f.replicas)
	}
}

func TestOutageWritesNothing(t *testing.T) {
	f := &fakeAPI{t: t, bodies: map[string]string{}, replicas: 3, machines: []map[string]any{machineObj("m-1", "node-1", false)}}
	p, err := newTest(t, f, Config{Namespace: "games", Name: "pool-a", Version: "v1beta2"})
	if err != nil {
		t.Fatal(err)
	}
	f.take()
	f.failReads = true
	if err := p.Delete(context.Background(), []*corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}}); !apierrors.IsServiceUnavailable(err) {
		t.Errorf("Delete during an outage: err %v", err)
	}
	if err := p.Resize(context.Background(), 5); !apierrors.IsServiceUnavailable(err) {
		t.Errorf("Resize during an outage: err %v", err)
	}
	for _, r := range f.take() {
		if !strings.HasPrefix(r, "GET ") {
			t.Errorf("during an outage the provider sent %s", r)
		}
	}
	if f.replicas != 3 {
		t.Errorf("replicas %d, want 3", f.replicas)
	}
}

func TestParsePoolName(t *testing.T) {
	for _, tc := range []struct {
		in, ns, name string
		ok           bool
	}{
		{"games/pool-a", "games", "pool-a", true},
		{"pool-a", "default", "pool-a", true},
		{" games/pool-a ", "games", "pool-a", true},
		{"/pool-a", "", "", false},
		{"games/", "", "", false},
		{"a/b/c", "", "", false},
		{"", "", "", false},
	} {
		ns, name, err := ParsePoolName(tc.in)
		if (err == nil) != tc.ok || ns != tc.ns || name != tc.name {
			t.Errorf("ParsePoolName(%q) = %q, %q, %v", tc.in, ns, name, err)
		}
	}
}

func TestTemplateFromAnnotations(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ann     map[string]string
		want    policy.Resources
		wantErr string
	}{
		{"none", nil, nil, ""},
		{"cpu and memory, default pods", map[string]string{CapacityCPU: "2", CapacityMemory: "8G"}, policy.Resources{"cpu": 2000, "memory": 8e9, "pods": 110}, ""},
		{"gpu and max pods", map[string]string{CapacityCPU: "500m", CapacityMaxPods: "30", CapacityGPUType: "nvidia.com/gpu", CapacityGPUCount: "2"}, policy.Resources{"cpu": 500, "pods": 30, "nvidia.com/gpu": 2}, ""},
		{"bad quantity", map[string]string{CapacityCPU: "lots"}, nil, CapacityCPU},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := TemplateFromAnnotations(tc.ann)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want it to name %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
