package externalscaler_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/swell-autoscaler/swell/pkg/externalscaler"
	pb "github.com/swell-autoscaler/swell/pkg/externalscaler/proto"
	"github.com/swell-autoscaler/swell/pkg/externalscaler/scalertest"
)

func httpRef(url string, extra ...string) *pb.ScaledObjectRef {
	md := map[string]string{
		"scalerAddress": "swell:8090", // KEDA's own key: ignored
		"source":        "http",
		"url":           url,
		"valueLocation": "queue.depth",
		"targetSize":    "1.5",
		"metricName":    "depth",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		md[extra[i]] = extra[i+1]
	}
	return &pb.ScaledObjectRef{Name: "worker", Namespace: "apps", ScalerMetadata: md}
}

// TestEveryRPCAndField drives every rpc through the generated client and
// checks every field, int and float alike.
func TestEveryRPCAndField(t *testing.T) {
	js := newJSONServer(t, `{"queue": {"depth": 2.5}}`)
	fc := clocktesting.NewFakeClock(time.Now())
	h := scalertest.Start(t, scalertest.Options{Tracker: externalscaler.TrackerOptions{Clock: fc, Interval: 5 * time.Second}})
	ctx := context.Background()
	ref := httpRef(js.URL)

	spec, err := h.Client.GetMetricSpec(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.MetricSpecs) != 1 {
		t.Fatalf("specs = %v", spec.MetricSpecs)
	}
	ms := spec.MetricSpecs[0]
	if ms.MetricName != "depth" || ms.TargetSize != 2 || ms.TargetSizeFloat != 1.5 {
		t.Fatalf("spec = {%q %d %v}, want {depth 2 1.5}", ms.MetricName, ms.TargetSize, ms.TargetSizeFloat)
	}

	got, err := h.Client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: "depth"})
	if err != nil {
		t.Fatal(err)
	}
	mv := got.MetricValues[0]
	if len(got.MetricValues) != 1 || mv.MetricName != "depth" || mv.MetricValue != 3 || mv.MetricValueFloat != 2.5 {
		t.Fatalf("value = %v, want {depth 3 2.5}", got.MetricValues)
	}

	act, err := h.Client.IsActive(ctx, ref)
	if err != nil || !act.Result {
		t.Fatalf("IsActive = %v, %v; want true", act, err)
	}

	// StreamMetricSpec sends the same specs at once.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ss, err := h.Client.StreamMetricSpec(sctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	first, err := ss.Recv()
	if err != nil || first.MetricSpecs[0].TargetSizeFloat != 1.5 || first.MetricSpecs[0].MetricName != "depth" {
		t.Fatalf("StreamMetricSpec = %v, %v", first, err)
	}

	// StreamIsActive: true now, false after the value drops to 0 and
	// true again: pushed only on change.
	st, err := h.Client.StreamIsActive(sctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	expectStream(t, st, true)
	js.set(http.StatusOK, `{"queue": {"depth": 0}}`)
	fc.Step(5 * time.Second)
	expectStream(t, st, false)
	js.set(http.StatusOK, `{"queue": {"depth": "7"}}`)
	fc.Step(5 * time.Second)
	expectStream(t, st, true)

	got, err = h.Client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: "depth"})
	if err != nil || got.MetricValues[0].MetricValue != 7 || got.MetricValues[0].MetricValueFloat != 7 {
		t.Fatalf("after change: %v, %v", got, err)
	}

	// Health service answers SERVING.
	hc, err := healthpb.NewHealthClient(h.Conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "externalscaler.ExternalScaler"})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", hc, err)
	}
	// One shared target for every call above.
	if n := h.Tracker.Len(); n != 1 {
		t.Fatalf("tracked targets = %d, want 1", n)
	}
}

func expectStream(t *testing.T, st pb.ExternalScaler_StreamIsActiveClient, want bool) {
	t.Helper()
	got := make(chan *pb.IsActiveResponse, 1)
	errc := make(chan error, 1)
	go func() {
		r, err := st.Recv()
		if err != nil {
			errc <- err
			return
		}
		got <- r
	}()
	select {
	case r := <-got:
		if r.Result != want {
			t.Fatalf("StreamIsActive pushed %v, want %v", r.Result, want)
		}
	case err := <-errc:
		t.Fatalf("StreamIsActive: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatalf("StreamIsActive pushed nothing, want %v", want)
	}
}

// TestNeverAFakeZero: a target never measured successfully, and one whose
// last polls failed, answer Unavailable, never 0.
func TestNeverAFakeZero(t *testing.T) {
	js := newJSONServer(t, `oops`)
	js.set(http.StatusInternalServerError, `{}`)
	fc := clocktesting.NewFakeClock(time.Now())
	h := scalertest.Start(t, scalertest.Options{Tracker: externalscaler.TrackerOptions{Clock: fc, Interval: 5 * time.Second, MaxFailures: 2}})
	ctx := context.Background()
	ref := httpRef(js.URL)
	req := &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: "depth"}

	_, err := h.Client.GetMetrics(ctx, req)
	wantCode(t, err, codes.Unavailable, "never measured successfully")
	_, err = h.Client.IsActive(ctx, ref)
	wantCode(t, err, codes.Unavailable, "HTTP 500")

	js.set(http.StatusOK, `{"queue": {"depth": 4}}`)
	fc.Step(5 * time.Second)
	eventually(t, 5*time.Second, func() error {
		r, err := h.Client.GetMetrics(ctx, req)
		if err != nil || r.MetricValues[0].MetricValueFloat != 4 {
			return fmt.Errorf("%v %w", r, err)
		}
		return nil
	})

	// One failure keeps the cached value; the second withdraws it.
	js.set(http.StatusBadGateway, `{}`)
	fc.Step(5 * time.Second)
	eventually(t, 5*time.Second, func() error {
		js.mu.Lock()
		defer js.mu.Unlock()
		if js.hits < 3 {
			return fmt.Errorf("hits %d", js.hits)
		}
		return nil
	})
	time.Sleep(50 * time.Millisecond)
	if r, err := h.Client.GetMetrics(ctx, req); err != nil || r.MetricValues[0].MetricValueFloat != 4 {
		t.Fatalf("after one failure: %v, %v; want the cached 4", r, err)
	}
	fc.Step(5 * time.Second)
	eventually(t, 5*time.Second, func() error {
		_, err := h.Client.GetMetrics(ctx, req)
		if status.Code(err) != codes.Unavailable {
			return fmt.Errorf("err = %w", err)
		}
		return nil
	})
	_, err = h.Client.GetMetrics(ctx, req)
	wantCode(t, err, codes.Unavailable, "last 2 polls failed")
}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(err.Error(), msg) {
		t.Fatalf("err = %v, want %s mentioning %q", err, code, msg)
	}
}

// TestInvalidMetadataNamesTheKey: InvalidArgument, every bad key named.
func TestInvalidMetadataNamesTheKey(t *testing.T) {
	h := scalertest.Start(t, scalertest.Options{})
	ref := &pb.ScaledObjectRef{Name: "w", Namespace: "ns", ScalerMetadata: map[string]string{
		"source": "kafka", "bootstrapServers": "nohost", "targetSize": "ten", "passwrd": "x", "password": "hunter2",
	}}
	_, err := h.Client.GetMetricSpec(context.Background(), ref)
	for _, want := range []string{"ns/w", `"targetSize"`, `"consumerGroup" is required`, `"passwrd" is not a key`, `"password": credentials are not accepted inline`, "nohost"} {
		wantCode(t, err, codes.InvalidArgument, want)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the password: %v", err)
	}
	_, err = h.Client.GetMetrics(context.Background(), &pb.GetMetricsRequest{ScaledObjectRef: httpRef("http://x"), MetricName: "nope"})
	wantCode(t, err, codes.InvalidArgument, `metricName "nope" is not one of its metrics (depth)`)
}

// TestIdleTargetsStop: a target nobody asks about is dropped after the
// idle timeout, one held by a stream is not.
func TestIdleTargetsStop(t *testing.T) {
	js := newJSONServer(t, `{"queue": {"depth": 1}}`)
	fc := clocktesting.NewFakeClock(time.Now())
	h := scalertest.Start(t, scalertest.Options{Tracker: externalscaler.TrackerOptions{Clock: fc, Interval: time.Second, IdleTimeout: 10 * time.Second}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	held, idle := httpRef(js.URL), httpRef(js.URL+"/other")
	st, err := h.Client.StreamIsActive(ctx, held)
	if err != nil {
		t.Fatal(err)
	}
	expectStream(t, st, true)
	if _, err := h.Client.GetMetricSpec(ctx, idle); err != nil {
		t.Fatal(err)
	}
	if n := h.Tracker.Len(); n != 2 {
		t.Fatalf("targets = %d, want 2", n)
	}
	eventually(t, 5*time.Second, func() error {
		fc.Step(time.Second)
		if n := h.Tracker.Len(); n != 1 {
			return fmt.Errorf("targets = %d, want 1 (the streamed one)", n)
		}
		return nil
	})
}
