package cpa

import (
	"errors"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
