package cpa

import (
	"context"
	"errors"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

func TestTargetObjectFallsBackToScaleOnlyWhenForbidden(t *testing.T) {
	sc := &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec:       autoscalingv1.ScaleSpec{Replicas: 3},
		Status:     autoscalingv1.ScaleStatus{Replicas: 3, Selector: "app=web"},
	}
	full := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "example.com/v1", "kind": "Shard", "spec": map[string]any{"shards": int64(7)}}}
	gr := schema.GroupResource{Group: "example.com", Resource: "shards"}
	for name, tc := range map[string]struct {
		obj      *unstructured.Unstructured
		err      error
		wantKind string
		wantErr  bool
	}{
		"readable":  {obj: full, wantKind: "Shard"},
		"forbidden": {err: apierrors.NewForbidden(gr, "web", errors.New("no rule")), wantKind: "Scale"},
		"not found": {err: apierrors.NewNotFound(gr, "web"), wantErr: true},
		"network":   {err: errors.New("connection refused"), wantErr: true},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := targetObject(sc)(tc.obj, tc.err)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %v, want the error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.GetKind() != tc.wantKind {
				t.Fatalf("kind %q, want %q", got.GetKind(), tc.wantKind)
			}
			if tc.wantKind != "Scale" {
				return
			}
			if r, _, _ := unstructured.NestedInt64(got.Object, "spec", "replicas"); r != 3 || got.GetName() != "web" || got.GetAPIVersion() != "autoscaling/v1" {
				t.Fatalf("scale stand-in = %v", got.Object)
			}
		})
	}
}

// scriptedScales is a scale.ScaleInterface whose Update answers from a list
// and whose Get returns a fixed current scale.
type scriptedScales struct {
	updateErrs []error
	current    *autoscalingv1.Scale
	updates    []*autoscalingv1.Scale
	gets       int
}

func (s *scriptedScales) Get(context.Context, schema.GroupResource, string, metav1.GetOptions) (*autoscalingv1.Scale, error) {
	s.gets++
	return s.current.DeepCopy(), nil
}

func (s *scriptedScales) Update(_ context.Context, _ schema.GroupResource, sc *autoscalingv1.Scale, _ metav1.UpdateOptions) (*autoscalingv1.Scale, error) {
	s.updates = append(s.updates, sc.DeepCopy())
	var err error
	if len(s.updateErrs) > 0 {
		err, s.updateErrs = s.updateErrs[0], s.updateErrs[1:]
	}
	return sc, err
}

func (s *scriptedScales) Patch(context.Context, schema.GroupVersionResource, string, types.PatchType, []byte, metav1.PatchOptions) (*autoscalingv1.Scale, error) {
	return nil, errors.New("not used")
}

func TestUpdateScaleRetriesAConflictOnlyWhenTheCountIsUnchanged(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	read := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", ResourceVersion: "1"}, Spec: autoscalingv1.ScaleSpec{Replicas: 2}}
	conflict := apierrors.NewConflict(gr, "web", errors.New("modified"))
	for name, tc := range map[string]struct {
		errs        []error
		current     int32
		wantErr     bool
		wantUpdates int
		wantLastRV  string
		wantGets    int
	}{
		"first update lands":             {wantUpdates: 1, wantLastRV: "1"},
		"status moved the version":       {errs: []error{conflict}, current: 2, wantUpdates: 2, wantLastRV: "7", wantGets: 1},
		"someone else changed the count": {errs: []error{conflict}, current: 5, wantErr: true, wantUpdates: 1, wantGets: 1},
		"a second conflict fails":        {errs: []error{conflict, conflict}, current: 2, wantErr: true, wantUpdates: 2, wantGets: 1},
		"other errors are not retried":   {errs: []error{errors.New("forbidden")}, wantErr: true, wantUpdates: 1},
	} {
		t.Run(name, func(t *testing.T) {
			s := &scriptedScales{updateErrs: tc.errs, current: &autoscalingv1.Scale{
				ObjectMeta: metav1.ObjectMeta{Name: "web", ResourceVersion: "7"}, Spec: autoscalingv1.ScaleSpec{Replicas: tc.current}}}
			err := updateScale(context.Background(), s, gr, read, 4)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if len(s.updates) != tc.wantUpdates || s.gets != tc.wantGets {
				t.Fatalf("%d updates, %d gets; want %d, %d", len(s.updates), s.gets, tc.wantUpdates, tc.wantGets)
			}
			last := s.updates[len(s.updates)-1]
			if last.Spec.Replicas != 4 {
				t.Fatalf("update asked for %d replicas, want 4", last.Spec.Replicas)
			}
			if tc.wantLastRV != "" && last.ResourceVersion != tc.wantLastRV {
				t.Fatalf("last update at resourceVersion %q, want %q", last.ResourceVersion, tc.wantLastRV)
			}
		})
	}
}
