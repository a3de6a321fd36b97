package scalerconfig

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
)

// fixedPinger answers every Ping with err.
type fixedPinger struct{ err error }

func (p fixedPinger) Ping(context.Context, *qv1.ScalerConfig) error { return p.err }
func (fixedPinger) Forget(types.NamespacedName)                     {}

// TestStatusSaysWhatFailedNotWhatCameBack: the status message, the
// Reachable condition and the BrokerUnreachable event carry the kind of a
// broker's invalid answer, never the answer, and keep errors that only say
// what failed.
func TestStatusSaysWhatFailedNotWhatCameBack(t *testing.T) {
	cases := []struct {
		name    string
		err     error
		want    string
		hidden  string
		healthy bool
	}{
		{name: "invalid reply", err: fmt.Errorf("redis 10.0.0.9:80: ping: %w", errors.New(`redis: invalid reply: "HTTP/1.1 200 OK token=abc123\r\n"`)),
			want: "redis 10.0.0.9:80: ping: the broker answered with an invalid reply (not a Redis server?)", hidden: "abc123"},
		{name: "connection refused", err: errors.New("redis 10.0.0.9:6379: dial tcp 10.0.0.9:6379: connect: connection refused"),
			want: "redis 10.0.0.9:6379: dial tcp 10.0.0.9:6379: connect: connection refused"},
		{name: "reachable", want: "redis broker answered", healthy: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			scheme := runtime.NewScheme()
			if err := qv1.AddToScheme(scheme); err != nil {
				t.Fatal(err)
			}
			sc := &qv1.ScalerConfig{ObjectMeta: metav1.ObjectMeta{Name: "q", Namespace: "team", Generation: 1},
				Spec: qv1.ScalerConfigSpec{Type: qv1.BrokerRedis}}
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(sc).WithStatusSubresource(&qv1.ScalerConfig{}).Build()
			rec := record.NewFakeRecorder(4)
			r := &Reconciler{Client: c, Recorder: rec, Pinger: fixedPinger{tc.err}, Interval: 1}
			key := types.NamespacedName{Namespace: "team", Name: "q"}
			if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: key}); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			got := &qv1.ScalerConfig{}
			if err := c.Get(context.Background(), key, got); err != nil {
				t.Fatal(err)
			}
			cond := meta.FindStatusCondition(got.Status.Conditions, ConditionReachable)
			if cond == nil || cond.Message != tc.want {
				t.Fatalf("Reachable condition = %+v, want message %q", cond, tc.want)
			}
			if got.Status.Healthy != tc.healthy {
				t.Errorf("healthy = %t, want %t", got.Status.Healthy, tc.healthy)
			}
			if !tc.healthy && got.Status.Message != tc.want {
				t.Errorf("status message = %q, want %q", got.Status.Message, tc.want)
			}
			event := <-rec.Events
			if !strings.HasSuffix(event, tc.want) {
				t.Errorf("event %q, want it to end with %q", event, tc.want)
			}
			if tc.hidden != "" && (strings.Contains(event, tc.hidden) || strings.Contains(got.Status.Message, tc.hidden)) {
				t.Errorf("the broker's answer reached the status or an event: %q / %q", got.Status.Message, event)
			}
		})
	}
}

// TestSteadyHealthWritesNothing: a broker that stays reachable costs one
// status write, for the first check; later checks, finding nothing new,
// send no request (an empty merge patch is still a write to the API
// server, every interval, for every ScalerConfig). A change of health is
// written again.
func TestSteadyHealthWritesNothing(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := qv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	sc := &qv1.ScalerConfig{ObjectMeta: metav1.ObjectMeta{Name: "q", Namespace: "team", Generation: 1},
		Spec: qv1.ScalerConfigSpec{Type: qv1.BrokerRedis}}
	patches := 0
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(sc).WithStatusSubresource(&qv1.ScalerConfig{}).
		WithInterceptorFuncs(interceptor.Funcs{
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
				patches++
				return c.SubResource(sub).Patch(ctx, obj, p, opts...)
			},
		}).Build()
	r := &Reconciler{Client: c, Recorder: record.NewFakeRecorder(10), Pinger: fixedPinger{}, Interval: 1}
	key := types.NamespacedName{Namespace: "team", Name: "q"}
	for _, step := range []struct {
		err         error
		wantPatches int
	}{{nil, 1}, {nil, 1}, {nil, 1}, {errors.New("connection refused"), 2}, {errors.New("connection refused"), 2}, {nil, 3}} {
		r.Pinger = fixedPinger{step.err}
		if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: key}); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
		if patches != step.wantPatches {
			t.Fatalf("after a check with error %v: %d status patches, want %d", step.err, patches, step.wantPatches)
		}
	}
}
