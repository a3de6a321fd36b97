// Package sourcetest holds what the broker packages' tests share to prove
// their measurement batching: many sources measured at the same moment.
package sourcetest

import (
	"context"
	"sync"

	"github.com/swell-autoscaler/swell/pkg/source"
)

// MeasureAll measures every source at once (their goroutines released
// together, so they fall into one batching window) and returns the
// samples and errors in the sources' order.
func MeasureAll(ctx context.Context, srcs []source.Source) ([]source.Sample, []error) {
	out, errs := make([]source.Sample, len(srcs)), make([]error, len(srcs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range srcs {
		wg.Go(func() {
			<-start
			out[i], errs[i] = s.Measure(ctx)
		})
	}
	close(start)
	wg.Wait()
	return out, errs
}
