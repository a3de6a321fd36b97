package nodepoolscaler

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/swell-autoscaler/swell/pkg/nodepool"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider"
	"github.com/swell-autoscaler/swell/pkg/policy"
)

func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		d    nodepool.Decision
		want string
	}{
		{nodepool.Decision{}, ""},
		{nodepool.Decision{Cordon: []string{"a", "b"}}, "cordoned a, b"},
		{nodepool.Decision{Uncordon: []string{"u"}, Delete: []string{"d"}, Size: 2, Resize: 4}, "uncordoned u; deleted d; resized 2 → 4"},
	} {
		if got := describe(tc.d); got != tc.want {
			t.Errorf("describe(%+v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

type fakeProvider struct{ err error }

func (f fakeProvider) Size(context.Context) (int, error)            { return 3, f.err }
func (f fakeProvider) Resize(context.Context, int) error            { return f.err }
func (f fakeProvider) Delete(context.Context, []*corev1.Node) error { return f.err }

type fakeTemplater struct{ fakeProvider }

func (fakeTemplater) Template() policy.Resources { return policy.Resources{"cpu": 4000} }

// TestHealthKeepsTemplateAndRecordsErrors: wrapping must not hide the
// node shape (the plan sizes growth from it) and must see every failure.
func TestHealthKeepsTemplateAndRecordsErrors(t *testing.T) {
	wrapped, h := withHealth(fakeTemplater{})
	if _, ok := wrapped.(provider.Templater); !ok {
		t.Fatal("wrapper hid the provider's Template")
	}
	if called, _ := h.Health(); called {
		t.Fatal("health reports a call before any")
	}
	if _, err := wrapped.Size(context.Background()); err != nil {
		t.Fatal(err)
	}
	if called, err := h.Health(); !called || err != nil {
		t.Fatalf("after a good call: called=%v err=%v", called, err)
	}
	plain, h2 := withHealth(fakeProvider{err: errors.New("cloud down")})
	if _, ok := plain.(provider.Templater); ok {
		t.Fatal("wrapper invented a Template")
	}
	_ = plain.Resize(context.Background(), 4)
	if _, err := h2.Health(); err == nil || err.Error() != "cloud down" {
		t.Fatalf("error not recorded: %v", err)
	}
}

// TestRunnersKeepStateAcrossRebuilds: the State a rebuilt runner gets is
// the one its predecessor used (cooldown, deletions in flight), until the
// object itself goes.
func TestRunnersKeepStateAcrossRebuilds(t *testing.T) {
	rs := newRunners()
	a := types.NamespacedName{Namespace: "ns", Name: "a"}
	b := types.NamespacedName{Namespace: "ns", Name: "b"}
	first := rs.state(a)
	stopped := 0
	rs.put(a, &runner{stop: func() { stopped++ }})
	rs.put(a, &runner{stop: func() { stopped++ }}) // a spec edit: rebuilt
	if rs.state(a) != first {
		t.Fatal("a rebuilt runner got a fresh State")
	}
	if stopped != 1 {
		t.Fatalf("the replaced runner was stopped %d times, want 1", stopped)
	}
	if rs.state(b) == first {
		t.Fatal("two objects share a State")
	}
	rs.remove(a)
	if stopped != 2 {
		t.Fatalf("remove did not stop the runner (%d stops)", stopped)
	}
	if rs.state(a) == first {
		t.Fatal("a deleted object's State outlived it")
	}
}
