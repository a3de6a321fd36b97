package brokersource

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
)

// TestCloseHangsUpEveryBroker, on a real Redis: when a leader's term ends
// the Sources it built close their connections (Redis sees them go), and
// a Source asked for afterwards dials anew.
func TestCloseHangsUpEveryBroker(t *testing.T) {
	ctx, host, port, admin := realRedis(t)
	clients := func() int {
		list, err := admin.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(strings.TrimSpace(list), "\n") + 1
	}

	scheme := runtime.NewScheme()
	_ = qv1.AddToScheme(scheme)
	var objs []*qv1.ScalerConfig
	for _, name := range []string{"a", "b"} {
		objs = append(objs, &qv1.ScalerConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "jobs", Name: name},
			Spec: qv1.ScalerConfigSpec{Type: qv1.BrokerRedis, Config: qv1.ScalerConnection{Host: host, Port: port}}})
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs[0], objs[1]).Build()
	s := NewSources(c, c)
	before := clients()
	for _, sc := range objs {
		src, err := s.Source(ctx, "jobs", sc.Name, "tasks")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.Measure(ctx); err != nil {
			t.Fatalf("measure through %s: %v", sc.Name, err)
		}
	}
	if open := clients() - before; open < 2 {
		t.Fatalf("%d new Redis clients after measuring through two ScalerConfigs, want at least 2", open)
	}
	s.Close()
	// Redis notices a closed connection on its next event loop turn.
	for deadline := time.Now().Add(5 * time.Second); clients()-before != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d Redis clients still open 5 s after Close", clients()-before)
		}
	}
	src, err := s.Source(ctx, "jobs", "a", "tasks")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Measure(ctx); err != nil {
		t.Fatalf("measure after Close: %v", err)
	}
	s.Close()
}
