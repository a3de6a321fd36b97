package redis

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/redis/reliable"
)

var heldScript = goredis.NewScript(reliable.HeldScript)

// heldCmd queues the count of the tasks the SDK workers cannot finish by
// themselves: those held in the processing lists of workers whose
// heartbeat expired (their pod is gone; a live worker of the same QWorker,
// or the first one started, moves them back) and those waiting out a retry
// backoff. A queue no SDK worker ever took from costs one script call that
// reads two missing keys.
func (s *queueSource) heldCmd(ctx context.Context, p goredis.Pipeliner, full bool) *goredis.Cmd {
	owner := ""
	if s.ref.Owner != "" {
		owner = s.ref.Owner + "/"
	}
	keys := []string{reliable.Registry(s.ref.Key), reliable.Delayed(s.ref.Key)}
	return scriptCmd(ctx, p, heldScript, full, keys, reliable.ProcessingPrefix(s.ref.Key), reliable.HeartbeatPrefix(s.ref.Key), owner)
}

// readHeld adds heldCmd's counts to a list's sample: both count as
// backlog, so a pool at zero wakes up for them; the dead workers' tasks
// are also ready (any worker takes them once moved back).
func (s *queueSource) readHeld(cmd *goredis.Cmd, sample *source.Sample) error {
	res, err := cmd.Int64Slice()
	if err != nil {
		return fmt.Errorf("redis tasks held by dead workers of %q: %w", s.ref.Key, err)
	}
	if len(res) != 2 {
		return fmt.Errorf("redis tasks held by dead workers of %q: unexpected reply %v", s.ref.Key, res)
	}
	orphaned, delayed := res[0], res[1]
	sample.Backlog += orphaned + delayed
	sample.Ready += orphaned
	return nil
}
