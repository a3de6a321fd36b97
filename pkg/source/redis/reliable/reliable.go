// Package reliable is the Redis key layout of Swell's reliable list queues,
// shared by the Go SDK (sdk/go/queue/redisq), the Python SDK (same layout,
// written out in swell_worker/redisq.py) and the Redis source, which counts
// the tasks held by dead workers as backlog so that a pool at zero wakes up
// for them.
//
// A worker is a member "<namespace>/<qworker>/<pod>" of the queue's worker
// registry. It moves each task it takes into its own processing list and
// keeps a heartbeat key with a TTL alive while it runs. A processing list
// whose heartbeat has expired belongs to a dead worker: any live worker of
// the same QWorker moves its tasks back onto the queue. Members carry the
// QWorker's namespace and name, so two QWorkers on one Redis never touch
// each other's lists.
package reliable

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultHeartbeatTTL is how long a worker's heartbeat lives unless
// refreshed; workers refresh it every third of that.
const DefaultHeartbeatTTL = 15 * time.Second

// Member names one worker of one QWorker: "<namespace>/<qworker>/<pod>".
func Member(owner, pod string) string { return owner + "/" + pod }

// Owner is "<namespace>/<name>" of a QWorker.
func Owner(namespace, name string) string { return namespace + "/" + name }

// ValidateOwner checks that owner is "<namespace>/<name>".
func ValidateOwner(owner string) error {
	ns, name, ok := strings.Cut(owner, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("owner %q: want <namespace>/<qworker name>", owner)
	}
	return nil
}

// SplitMember returns the owner ("<namespace>/<qworker>") and pod of a
// registry member.
func SplitMember(member string) (owner, pod string, err error) {
	i := strings.LastIndex(member, "/")
	if i < 0 || ValidateOwner(member[:i]) != nil || i == len(member)-1 {
		return "", "", errors.New("registry member " + member + ": want <namespace>/<qworker>/<pod>")
	}
	return member[:i], member[i+1:], nil
}

// Registry is the set of members that ever took a task from queue and have
// not yet been cleaned up.
func Registry(queue string) string { return queue + ":swell:workers" }

// Processing is the list of tasks member took from queue and has not yet
// acknowledged or handed back.
func Processing(queue, member string) string { return queue + ":swell:processing:" + member }

// Heartbeat is the key a live member keeps set (with a TTL).
func Heartbeat(queue, member string) string { return queue + ":swell:alive:" + member }

// Attempts is the hash counting, per task body (by its SHA-1), how many
// times a task of queue failed or was held by a worker that died.
func Attempts(queue string) string { return queue + ":swell:attempts" }

// Delayed is the sorted set of failed tasks waiting out their backoff
// (score: due time in Unix milliseconds; member: "<seq>:<body>").
func Delayed(queue string) string { return queue + ":swell:delayed" }

// Dead is the dead-letter list: tasks that failed MaxAttempts times.
func Dead(queue string) string { return queue + ":dead" }

// HeldScript counts the tasks held by members whose heartbeat expired and
// the tasks waiting out a backoff. KEYS[1] is the registry, KEYS[2] the
// delayed set; ARGV[1] the processing-key prefix, ARGV[2] the heartbeat
// prefix, ARGV[3] an owner prefix ("<ns>/<name>/", empty for every owner).
// It replies {orphaned, delayed}.
const HeldScript = `
local orphaned = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if ARGV[3] == '' or string.sub(m, 1, #ARGV[3]) == ARGV[3] then
    if redis.call('EXISTS', ARGV[2] .. m) == 0 then
      orphaned = orphaned + redis.call('LLEN', ARGV[1] .. m)
    end
  end
end
return {orphaned, redis.call('ZCARD', KEYS[2])}
`

// ProcessingPrefix and HeartbeatPrefix are the key prefixes HeldScript
// takes.
func ProcessingPrefix(queue string) string { return Processing(queue, "") }

// HeartbeatPrefix is Heartbeat(queue, "").
func HeartbeatPrefix(queue string) string { return Heartbeat(queue, "") }
