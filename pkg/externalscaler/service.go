package externalscaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/swell-autoscaler/swell/pkg/externalscaler/proto"
)

// maxCachedSpecs bounds the decoded-metadata cache; past it the cache
// starts over (metadata rarely changes, so it refills at once).
const maxCachedSpecs = 20000

// Service implements KEDA's ExternalScaler rpcs from the Tracker's cache.
type Service struct {
	pb.UnimplementedExternalScalerServer

	parser  *Parser
	tracker *Tracker
	log     *slog.Logger

	closing   chan struct{}
	closeOnce sync.Once

	mu    sync.Mutex
	specs map[string]*Spec
}

// NewService serves specs decoded by parser and measured by tracker.
func NewService(parser *Parser, tracker *Tracker, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{parser: parser, tracker: tracker, log: log, closing: make(chan struct{}), specs: map[string]*Spec{}}
}

// Shutdown ends every open stream (KEDA reconnects elsewhere), so a
// graceful stop does not wait for streams that never end on their own.
func (s *Service) Shutdown() {
	s.closeOnce.Do(func() { close(s.closing) })
}

// cacheKey is the metadata in a canonical order. It stays in memory only:
// values of `*FromEnv` keys are credentials.
func cacheKey(md map[string]string) string {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(md[k])
		b.WriteByte(0)
	}
	return b.String()
}

// spec decodes a ScaledObjectRef's metadata once per distinct metadata.
func (s *Service) spec(ref *pb.ScaledObjectRef) (*Spec, error) {
	if ref == nil {
		return nil, status.Error(codes.InvalidArgument, "scaledObjectRef is required")
	}
	key := cacheKey(ref.GetScalerMetadata())
	s.mu.Lock()
	spec, ok := s.specs[key]
	s.mu.Unlock()
	if ok {
		return spec, nil
	}
	spec, err := s.parser.Parse(ref.GetScalerMetadata())
	var bound *BindingError
	if errors.As(err, &bound) {
		// Logged with the names only: the credential's value never is.
		s.log.Warn("refused: a credential paired with an address not declared for it", "scaledObject", ref.GetNamespace()+"/"+ref.GetName(),
			"credential", bound.Credential, "address", bound.Address, "declared", bound.Allowed)
		return nil, status.Errorf(codes.PermissionDenied, "ScaledObject %s/%s: %v", ref.GetNamespace(), ref.GetName(), err)
	}
	if err != nil {
		s.log.Warn("invalid scaler metadata", "scaledObject", ref.GetNamespace()+"/"+ref.GetName(), "err", err)
		return nil, status.Errorf(codes.InvalidArgument, "ScaledObject %s/%s: %v", ref.GetNamespace(), ref.GetName(), err)
	}
	s.mu.Lock()
	if len(s.specs) >= maxCachedSpecs {
		s.specs = map[string]*Spec{}
	}
	s.specs[key] = spec
	s.mu.Unlock()
	return spec, nil
}

// readErr maps a tracker error to a gRPC status: Unavailable for "no
// trustworthy value", so KEDA falls back instead of scaling on a zero.
func readErr(ref *pb.ScaledObjectRef, err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Errorf(code, "ScaledObject %s/%s: %v", ref.GetNamespace(), ref.GetName(), err)
}

// IsActive answers whether the target's first metric is above the
// activation threshold (Azul ScaledObjects: always, unless one is set).
func (s *Service) IsActive(ctx context.Context, ref *pb.ScaledObjectRef) (*pb.IsActiveResponse, error) {
	spec, err := s.spec(ref)
	if err != nil {
		return nil, err
	}
	r, err := s.tracker.Read(ctx, spec)
	if err != nil {
		return nil, readErr(ref, err)
	}
	return &pb.IsActiveResponse{Result: spec.Active(r)}, nil
}

// GetMetricSpec lists the ScaledObject's metrics with both target fields
// filled (KEDA ≥ 2.17 reads targetSizeFloat when > 0, older ones
// targetSize). It also starts tracking the target, so the first
// GetMetrics finds a value.
func (s *Service) GetMetricSpec(_ context.Context, ref *pb.ScaledObjectRef) (*pb.GetMetricSpecResponse, error) {
	spec, err := s.spec(ref)
	if err != nil {
		return nil, err
	}
	_, release := s.tracker.acquire(spec)
	release()
	return metricSpecs(spec), nil
}

func metricSpecs(spec *Spec) *pb.GetMetricSpecResponse {
	out := &pb.GetMetricSpecResponse{}
	for _, m := range spec.Metrics {
		out.MetricSpecs = append(out.MetricSpecs, &pb.MetricSpec{
			MetricName:      m.Name,
			TargetSize:      roundInt(m.Target, true),
			TargetSizeFloat: m.Target,
		})
	}
	return out
}

// GetMetrics answers one metric from the cache, both value fields filled.
func (s *Service) GetMetrics(ctx context.Context, req *pb.GetMetricsRequest) (*pb.GetMetricsResponse, error) {
	ref := req.GetScaledObjectRef()
	spec, err := s.spec(ref)
	if err != nil {
		return nil, err
	}
	m, ok := spec.Metric(req.GetMetricName())
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "ScaledObject %s/%s: metricName %q is not one of its metrics (%s)",
			ref.GetNamespace(), ref.GetName(), req.GetMetricName(), spec.MetricNames())
	}
	r, err := s.tracker.Read(ctx, spec)
	if err == nil && m.Field == fieldWaitReplicas {
		r, err = spec.withWait(r)
	}
	if err != nil {
		return nil, readErr(ref, err)
	}
	v := r.Values[m.Field]
	return &pb.GetMetricsResponse{MetricValues: []*pb.MetricValue{{
		MetricName:       m.Name,
		MetricValue:      roundInt(v, false),
		MetricValueFloat: v,
	}}}, nil
}

// StreamIsActive sends the activity as soon as it is known and again
// whenever it changes. While the target cannot be measured nothing is
// sent (neither true nor a fake false); KEDA's polling then sees the
// error.
func (s *Service) StreamIsActive(ref *pb.ScaledObjectRef, stream pb.ExternalScaler_StreamIsActiveServer) error {
	spec, err := s.spec(ref)
	if err != nil {
		return err
	}
	read, changed, stop := s.tracker.Subscribe(spec)
	defer stop()
	last := -1 // unknown; 0 false, 1 true
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case <-s.closing:
			return status.Error(codes.Unavailable, "server shutting down")
		case <-changed:
		}
		r, err := read()
		if err != nil {
			continue
		}
		now := boolInt(spec.Active(r))
		if now == last {
			continue
		}
		if err := stream.Send(&pb.IsActiveResponse{Result: now == 1}); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		last = now
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// StreamMetricSpec sends the metric specs once: they follow from the
// metadata alone, which only changes with a new ScaledObject generation
// (and then KEDA opens a new stream).
func (s *Service) StreamMetricSpec(ref *pb.ScaledObjectRef, stream pb.ExternalScaler_StreamMetricSpecServer) error {
	spec, err := s.spec(ref)
	if err != nil {
		return err
	}
	if err := stream.Send(metricSpecs(spec)); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	select {
	case <-stream.Context().Done():
		return nil
	case <-s.closing:
		return status.Error(codes.Unavailable, "server shutting down")
	}
}
