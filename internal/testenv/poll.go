package testenv

import (
	"context"
	"fmt"
	"time"
)

// pollUntil retries check every 100 ms until it succeeds or ctx ends.
func pollUntil(ctx context.Context, check func(context.Context) error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last check: %w)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}
