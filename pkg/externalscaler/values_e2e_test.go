package externalscaler_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/swell-autoscaler/swell/pkg/externalscaler/proto"
	"github.com/swell-autoscaler/swell/pkg/externalscaler/scalertest"
)

// metricValue reads one metric through GetMetrics, checking that the int
// field rounds the float one (half away from zero).
func metricValue(ctx context.Context, h *scalertest.Scaler, ref *pb.ScaledObjectRef, name string) (float64, error) {
	r, err := h.Client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: name})
	if err != nil {
		return 0, err
	}
	v := r.MetricValues[0]
	if v.MetricValue != int64(math.Round(v.MetricValueFloat)) {
		return 0, fmt.Errorf("%s: int %d does not round float %v", name, v.MetricValue, v.MetricValueFloat)
	}
	return v.MetricValueFloat, nil
}

// expectValue waits until metric name reads want and IsActive says active.
func expectValue(ctx context.Context, t *testing.T, h *scalertest.Scaler, ref *pb.ScaledObjectRef, name string, want float64, active bool) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		v, err := metricValue(ctx, h, ref, name)
		if err != nil || v != want {
			return fmt.Errorf("%s = %v, %w; want %v", name, v, err, want)
		}
		a, err := h.Client.IsActive(ctx, ref)
		if err != nil || a.Result != active {
			return fmt.Errorf("IsActive = %v, %w; want %v", a, err, active)
		}
		return nil
	})
}

// expectUnavailable waits until metric name answers gRPC Unavailable, and
// fails at once if it ever reads 0 meanwhile: callers stop the source while
// its value is not 0, so a 0 could only be an outage made to look like an
// empty queue.
func expectUnavailable(ctx context.Context, t *testing.T, h *scalertest.Scaler, ref *pb.ScaledObjectRef, name string) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		v, err := metricValue(ctx, h, ref, name)
		if status.Code(err) == codes.Unavailable {
			t.Logf("%s while its source is down: %v", name, err)
			return nil
		}
		if err == nil && v == 0 {
			t.Fatalf("%s: an outage reported as 0", name)
		}
		return fmt.Errorf("%s = %v, %w; want Unavailable", name, v, err)
	})
}
