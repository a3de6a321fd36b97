package guard

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider"
	"github.com/swell-autoscaler/swell/pkg/policy"
)

// recorder is a provider that records calls; sizeErr makes Size fail.
type recorder struct {
	size    int
	sizeErr error
	calls   []string
}

func (r *recorder) Size(context.Context) (int, error) {
	r.calls = append(r.calls, "size")
	return r.size, r.sizeErr
}

func (r *recorder) Resize(_ context.Context, n int) error {
	r.calls = append(r.calls, "resize")
	r.size = n
	return nil
}

func (r *recorder) Delete(_ context.Context, nodes []*corev1.Node) error {
	for _, n := range nodes {
		r.calls = append(r.calls, "delete "+n.Name)
	}
	return nil
}

type withTemplate struct{ *recorder }

func (withTemplate) Template() policy.Resources { return policy.Resources{"cpu": 4000} }

func TestGuard(t *testing.T) {
	outage := errors.New("503 Service Unavailable")
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	cases := []struct {
		name      string
		size      int
		sizeErr   error
		act       func(provider.Provider) error
		wantCalls []string
		wantErr   string
	}{
		{"grow", 2, nil, func(p provider.Provider) error { return p.Resize(context.Background(), 3) }, []string{"size", "resize"}, ""},
		{"same size sends nothing", 3, nil, func(p provider.Provider) error { return p.Resize(context.Background(), 3) }, []string{"size"}, ""},
		{"shrink by resize is refused", 4, nil, func(p provider.Provider) error { return p.Resize(context.Background(), 3) }, []string{"size"}, "would let it pick"},
		{"outage holds a resize", 2, outage, func(p provider.Provider) error { return p.Resize(context.Background(), 3) }, []string{"size"}, "not resized to 3: 503"},
		{"delete", 2, nil, func(p provider.Provider) error { return p.Delete(context.Background(), []*corev1.Node{node}) }, []string{"size", "delete n1"}, ""},
		{"outage holds a delete", 2, outage, func(p provider.Provider) error { return p.Delete(context.Background(), []*corev1.Node{node}) }, []string{"size"}, "1 node(s) are not deleted: 503"},
		{"nothing to delete", 2, outage, func(p provider.Provider) error { return p.Delete(context.Background(), nil) }, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &recorder{size: c.size, sizeErr: c.sizeErr}
			err := c.act(Wrap(r))
			if c.wantErr == "" && err != nil {
				t.Fatalf("error %v", err)
			}
			if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, c.wantErr)
			}
			if !reflect.DeepEqual(r.calls, c.wantCalls) {
				t.Fatalf("calls %v, want %v", r.calls, c.wantCalls)
			}
		})
	}
}

func TestWrapKeepsTemplater(t *testing.T) {
	if _, ok := Wrap(&recorder{}).(provider.Templater); ok {
		t.Fatal("a provider without a template became a Templater")
	}
	tp, ok := Wrap(withTemplate{&recorder{}}).(provider.Templater)
	if !ok || tp.Template()["cpu"] != 4000 {
		t.Fatalf("template lost: %v", ok)
	}
}
