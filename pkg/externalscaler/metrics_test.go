package externalscaler

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestStreamInterceptorCountsOpenAndEndedStreams(t *testing.T) {
	for name, tc := range map[string]struct {
		err  error
		code string
	}{
		"ended cleanly": {nil, "OK"},
		"ended failing": {status.Error(codes.Unavailable, "broker down"), "Unavailable"},
		"plain error":   {errors.New("boom"), "Unknown"},
	} {
		t.Run(name, func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			info := &grpc.StreamServerInfo{FullMethod: "/externalscaler.ExternalScaler/StreamIsActive"}
			var openDuring float64
			err := m.StreamInterceptor()(nil, nil, info, func(any, grpc.ServerStream) error {
				openDuring = testutil.ToFloat64(m.streams.WithLabelValues("StreamIsActive"))
				return tc.err
			})
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if openDuring != 1 {
				t.Errorf("open streams while serving = %v, want 1", openDuring)
			}
			if got := testutil.ToFloat64(m.streams.WithLabelValues("StreamIsActive")); got != 0 {
				t.Errorf("open streams after the end = %v, want 0", got)
			}
			if got := testutil.ToFloat64(m.requests.WithLabelValues("StreamIsActive", tc.code)); got != 1 {
				t.Errorf("requests{code=%s} = %v, want 1", tc.code, got)
			}
		})
	}
}

func TestNilMetricsStreamInterceptorStillServes(t *testing.T) {
	var m *Metrics
	called := false
	err := m.StreamInterceptor()(nil, nil, &grpc.StreamServerInfo{FullMethod: "/x/Y"}, func(any, grpc.ServerStream) error {
		called = true
		return nil
	})
	if err != nil || !called {
		t.Fatalf("err = %v, called = %v", err, called)
	}
}
