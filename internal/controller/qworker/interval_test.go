package qworker

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
)

func TestPollingIntervalFallsBackToScalerConfig(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := qv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	sc := &qv1.ScalerConfig{ObjectMeta: metav1.ObjectMeta{Name: "redis", Namespace: "ns"},
		Spec: qv1.ScalerConfigSpec{Type: qv1.BrokerRedis, PollingIntervalSeconds: ptr.To[int32](17)}}
	r := &Reconciler{Client: fake.NewClientBuilder().WithScheme(scheme).WithObjects(sc).Build()}
	cases := []struct {
		name string
		own  *int32
		ref  string
		want time.Duration
	}{
		{"QWorker's own interval wins", ptr.To[int32](3), "redis", 3 * time.Second},
		{"ScalerConfig's interval applies", nil, "redis", 17 * time.Second},
		{"missing ScalerConfig keeps the default", nil, "absent", defaultPollingInterval},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			qw := &qv1.QWorker{ObjectMeta: metav1.ObjectMeta{Name: "w", Namespace: "ns"}, Spec: qv1.QWorkerSpec{
				ScaleConfig: qv1.ScaleConfig{ScalerConfigRef: c.ref, Queue: "q", MaxReplicas: 2, ScalingFactor: 1, PollingIntervalSeconds: c.own}}}
			spec, err := decodeSpec(qw)
			if err != nil {
				t.Fatal(err)
			}
			r.applyScalerConfigInterval(context.Background(), qw, &spec)
			if spec.PollingInterval != c.want {
				t.Fatalf("polling interval %s, want %s", spec.PollingInterval, c.want)
			}
		})
	}
}
