// Package redisq is an at-least-once Redis list consumer for Swell workers,
// compatible with QScaler's producers (LPUSH onto a list, consumers take from
// the right).
//
// It uses the reliable-queue pattern with the key layout of
// pkg/source/redis/reliable: BLMOVE moves a task atomically from the queue
// into a processing list that belongs to this worker ("<namespace>/<qworker>/<pod>"),
// and the task leaves that list only when acknowledged. While it runs, the
// worker keeps a heartbeat key alive (TTL Options.HeartbeatTTL). At start and
// every Options.RecoverEvery, it moves the tasks of workers of the same
// QWorker whose heartbeat has expired back onto the queue, so a task held by
// a pod that died for good is done again; the Redis source counts such tasks
// as backlog, so a pool at zero starts a worker for them.
//
// A task whose handler fails is retried after a backoff (doubling from
// Options.Backoff) and, after Options.MaxAttempts failures, moved to the
// dead-letter list "<queue>:dead". An ack or hand-back that fails (Redis
// unreachable) is retried in the background until it succeeds.
package redisq

import (
	"context"
	"crypto/sha1" //nolint:gosec // a task's field name in the attempts hash, not a security use; Lua's redis.sha1hex must match
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/swell-autoscaler/swell/pkg/source/redis/reliable"
	"github.com/swell-autoscaler/swell/sdk/go/worker"
)

// blockFor bounds each BLMOVE so cancellation is noticed promptly even if
// the client cannot interrupt a blocked command.
const blockFor = time.Second

// Defaults of Options.
const (
	DefaultMaxAttempts  = 5
	DefaultBackoff      = time.Second
	DefaultMaxBackoff   = time.Minute
	DefaultRecoverEvery = 30 * time.Second
)

// tick is the period of the maintenance loop: due retries move back onto
// the queue and failed acks are retried at this pace.
const tick = time.Second

// Options configure a Queue.
type Options struct {
	// Owner is the QWorker, "<namespace>/<name>" (required): only workers
	// of the same QWorker recover each other's tasks.
	Owner string
	// Pod is this worker's pod name (required).
	Pod string
	// MaxAttempts is how many times a task may fail (handler error, or its
	// worker died holding it) before it goes to "<queue>:dead"; 0 means
	// DefaultMaxAttempts, negative means never dead-letter.
	MaxAttempts int
	// Backoff is the wait before a failed task is taken again, doubled per
	// failure up to MaxBackoff; 0 means DefaultBackoff, negative means none.
	Backoff time.Duration
	// MaxBackoff caps Backoff; 0 means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// HeartbeatTTL is how long this worker counts as alive after its last
	// heartbeat (sent every third of it); 0 means reliable.DefaultHeartbeatTTL.
	HeartbeatTTL time.Duration
	// RecoverEvery is how often the worker looks for dead workers' tasks;
	// 0 means DefaultRecoverEvery.
	RecoverEvery time.Duration
	// Logger receives recovery, retry and dead-letter logs; nil is slog.Default.
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if err := reliable.ValidateOwner(o.Owner); err != nil {
		return o, fmt.Errorf("redisq options: %w", err)
	}
	if o.Pod == "" {
		return o, errors.New("redisq options: pod is required")
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Backoff == 0 {
		o.Backoff = DefaultBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.HeartbeatTTL <= 0 {
		o.HeartbeatTTL = reliable.DefaultHeartbeatTTL
	}
	if o.HeartbeatTTL < 3*time.Second {
		return o, fmt.Errorf("redisq options: heartbeatTTL %s is below 3s", o.HeartbeatTTL)
	}
	if o.RecoverEvery <= 0 {
		o.RecoverEvery = DefaultRecoverEvery
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Counters are what a Queue did since it opened, for metrics.
type Counters struct {
	Acked, Retried, DeadLettered, Recovered, SettleRetries int64
}

// Queue consumes one Redis list for one worker.
type Queue struct {
	rdb        *redis.Client
	queue      string
	member     string
	processing string
	heartbeat  string
	opts       Options
	log        *slog.Logger

	acked, retried, dead, recovered, settleRetries atomic.Int64

	mu      sync.Mutex
	pending []func(context.Context) error // settles that failed, retried by maintain
	missing map[string]time.Time          // members first seen without a heartbeat

	stop context.CancelFunc
	done chan struct{}
}

// ProcessingKey is the list holding member's unacknowledged tasks of queue
// (member as reliable.Member; "*" makes a KEYS pattern for all of them).
func ProcessingKey(queue, member string) string { return reliable.Processing(queue, member) }

// Open registers the worker, sends its first heartbeat, recovers what its
// own pod held before (a restarted container) and what dead workers of its
// QWorker hold, and starts the maintenance loop (heartbeat, due retries,
// failed-settle retries, periodic recovery) until Close or ctx ends.
func Open(ctx context.Context, rdb *redis.Client, queue string, opts Options) (*Queue, error) {
	if queue == "" {
		return nil, errors.New("redisq: queue is required")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	member := reliable.Member(opts.Owner, opts.Pod)
	q := &Queue{
		rdb: rdb, queue: queue, member: member, opts: opts,
		processing: reliable.Processing(queue, member),
		heartbeat:  reliable.Heartbeat(queue, member),
		log:        opts.Logger.With("queue", queue),
		missing:    map[string]time.Time{},
		done:       make(chan struct{}),
	}
	// Our own list holds what a previous process in this pod took: nobody
	// works on it now, whatever the heartbeat says.
	if _, _, err := q.recoverMember(ctx, member, true); err != nil {
		return nil, err
	}
	if err := q.beat(ctx); err != nil {
		return nil, err
	}
	if err := q.Recover(ctx); err != nil {
		q.log.Warn("recover tasks of dead workers", "err", err)
	}
	loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	q.stop = stop
	go q.maintain(loopCtx)
	go func() {
		<-ctx.Done()
		stop()
	}()
	return q, nil
}

// DeadLettered is how many tasks the queue dead-lettered so far; the
// worker reports it on its pod (worker.DeadLetterCounter).
func (q *Queue) DeadLettered() int64 { return q.dead.Load() }

var _ worker.DeadLetterCounter = (*Queue)(nil)

// Counters reports what the queue did so far.
func (q *Queue) Counters() Counters {
	return Counters{Acked: q.acked.Load(), Retried: q.retried.Load(), DeadLettered: q.dead.Load(), Recovered: q.recovered.Load(), SettleRetries: q.settleRetries.Load()}
}

// Close stops the maintenance loop, tries once more to settle what failed,
// and drops the heartbeat (so whatever this worker still holds is
// recovered by others) and, when it holds nothing, its registration.
func (q *Queue) Close(ctx context.Context) error {
	q.stop()
	<-q.done
	q.flush(ctx)
	if err := q.rdb.Del(ctx, q.heartbeat).Err(); err != nil {
		return fmt.Errorf("redis DEL %s: %w", q.heartbeat, err)
	}
	if err := unregister.Run(ctx, q.rdb, []string{q.processing, reliable.Registry(q.queue)}, q.member).Err(); err != nil {
		return fmt.Errorf("redis unregister %s: %w", q.member, err)
	}
	return nil
}

var unregister = redis.NewScript(`
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
return 0
`)

// Take moves the oldest task into this worker's processing list.
func (q *Queue) Take(ctx context.Context) (worker.Delivery, error) {
	for ctx.Err() == nil {
		body, err := q.rdb.BLMove(ctx, q.queue, q.processing, "RIGHT", "LEFT", blockFor).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil
			}
			if errors.Is(err, redis.ErrClosed) {
				return nil, fmt.Errorf("redis BLMOVE %s: %w: %w", q.queue, worker.ErrQueueClosed, err)
			}
			return nil, fmt.Errorf("redis BLMOVE %s: %w", q.queue, err)
		}
		return &delivery{q: q, body: body}, nil
	}
	return nil, nil
}

type delivery struct {
	q    *Queue
	body string
}

func (d *delivery) ID() string   { return taskID(d.body) }
func (d *delivery) Body() []byte { return []byte(d.body) }

// Ack removes the task from the processing list and forgets its attempts.
// When Redis does not answer, the ack is retried in the background until
// it succeeds (the task stays held meanwhile, so nobody runs it again).
func (d *delivery) Ack(ctx context.Context) error {
	if err := d.q.ack(ctx, d.body); err != nil {
		d.q.retryLater(func(ctx context.Context) error { return d.q.ack(ctx, d.body) })
		return err
	}
	d.q.acked.Add(1)
	return nil
}

func (q *Queue) ack(ctx context.Context, body string) error {
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LRem(ctx, q.processing, 1, body)
		p.HDel(ctx, reliable.Attempts(q.queue), bodyHash(body))
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis ack on %s: %w", q.processing, err)
	}
	return nil
}

// Return counts a failed attempt and hands the task back: after the
// backoff onto the consuming end of the queue, or to "<queue>:dead" after
// MaxAttempts failures. A failed hand-back is retried in the background.
func (d *delivery) Return(ctx context.Context) error {
	if err := d.q.giveBack(ctx, d.body); err != nil {
		d.q.retryLater(func(ctx context.Context) error { return d.q.giveBack(ctx, d.body) })
		return err
	}
	return nil
}

// giveBackScript: KEYS processing, queue, attempts, dead, delayed;
// ARGV body, maxAttempts (<=0: never), backoff ms (<=0: none), max backoff ms.
// Replies {outcome, attempts}; outcome "gone" when the task was no longer
// held (an earlier try succeeded), so a retry never duplicates it.
var giveBackScript = redis.NewScript(`
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return {'gone', 0} end
local h = redis.sha1hex(ARGV[1])
local n = redis.call('HINCRBY', KEYS[3], h, 1)
local max = tonumber(ARGV[2])
if max > 0 and n >= max then
  redis.call('HDEL', KEYS[3], h)
  redis.call('LPUSH', KEYS[4], ARGV[1])
  return {'dead', n}
end
local base = tonumber(ARGV[3])
if base > 0 then
  local delay = math.min(base * 2 ^ (n - 1), tonumber(ARGV[4]))
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local seq = redis.call('INCR', KEYS[5] .. ':seq')
  redis.call('ZADD', KEYS[5], now + delay, seq .. ':' .. ARGV[1])
  return {'delayed', n}
end
redis.call('RPUSH', KEYS[2], ARGV[1])
return {'queued', n}
`)

func (q *Queue) giveBack(ctx context.Context, body string) error {
	keys := []string{q.processing, q.queue, reliable.Attempts(q.queue), reliable.Dead(q.queue), reliable.Delayed(q.queue)}
	res, err := giveBackScript.Run(ctx, q.rdb, keys, body, q.opts.MaxAttempts, q.opts.Backoff.Milliseconds(), q.opts.MaxBackoff.Milliseconds()).Slice()
	if err != nil {
		return fmt.Errorf("redis hand back to %s: %w", q.queue, err)
	}
	outcome, _ := res[0].(string)
	attempts, _ := res[1].(int64)
	switch outcome {
	case "dead":
		q.dead.Add(1)
		q.log.Error("task dead-lettered", "task", taskID(body), "attempts", attempts, "deadList", reliable.Dead(q.queue))
	case "delayed", "queued":
		q.retried.Add(1)
		q.log.Warn("task failed; retrying", "task", taskID(body), "attempts", attempts, "maxAttempts", q.opts.MaxAttempts)
	}
	return nil
}

// retryLater keeps a failed settle for the maintenance loop.
func (q *Queue) retryLater(settle func(context.Context) error) {
	q.mu.Lock()
	q.pending = append(q.pending, settle)
	q.mu.Unlock()
}

// flush retries the settles that failed, keeping those that fail again.
func (q *Queue) flush(ctx context.Context) {
	q.mu.Lock()
	todo := q.pending
	q.pending = nil
	q.mu.Unlock()
	var again []func(context.Context) error
	for _, settle := range todo {
		if err := settle(ctx); err != nil {
			again = append(again, settle)
			continue
		}
		q.settleRetries.Add(1)
		q.log.Info("settled a task after a failed try")
	}
	if len(again) > 0 {
		q.mu.Lock()
		q.pending = append(again, q.pending...)
		q.mu.Unlock()
	}
}

// maintain runs until ctx ends: heartbeat every third of its TTL, due
// retries and failed settles every tick, recovery every RecoverEvery (and
// sooner while a worker without heartbeat waits to be confirmed dead).
func (q *Queue) maintain(ctx context.Context) {
	defer close(q.done)
	t := time.NewTicker(tick)
	defer t.Stop()
	lastBeat, lastRecover := time.Now(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if now.Sub(lastBeat) >= q.opts.HeartbeatTTL/3 {
			if err := q.beat(ctx); err != nil {
				q.log.Warn("heartbeat", "err", err)
			} else {
				lastBeat = now
			}
		}
		q.flush(ctx)
		if err := q.moveDue(ctx); err != nil && ctx.Err() == nil {
			q.log.Warn("move due retries onto the queue", "err", err)
		}
		if now.Sub(lastRecover) >= q.opts.RecoverEvery || q.suspectDue(now) {
			lastRecover = now
			if err := q.Recover(ctx); err != nil && ctx.Err() == nil {
				q.log.Warn("recover tasks of dead workers", "err", err)
			}
		}
	}
}

// beat refreshes the heartbeat and the registration (which a recovery
// drops for a worker it took for dead).
func (q *Queue) beat(ctx context.Context) error {
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, q.heartbeat, q.opts.Pod, q.opts.HeartbeatTTL)
		p.SAdd(ctx, reliable.Registry(q.queue), q.member)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis heartbeat %s: %w", q.heartbeat, err)
	}
	return nil
}

// suspectDue reports whether a worker seen without heartbeat has been
// missing long enough to be confirmed dead.
func (q *Queue) suspectDue(now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, first := range q.missing {
		if now.Sub(first) >= q.opts.HeartbeatTTL {
			return true
		}
	}
	return false
}

var moveDueScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  local i = string.find(m, ':', 1, true)
  redis.call('RPUSH', KEYS[2], string.sub(m, i + 1))
end
return #due
`)

// moveDue puts the failed tasks whose backoff ended back onto the queue.
func (q *Queue) moveDue(ctx context.Context) error {
	if err := moveDueScript.Run(ctx, q.rdb, []string{reliable.Delayed(q.queue), q.queue}).Err(); err != nil {
		return fmt.Errorf("redis move due retries of %s: %w", q.queue, err)
	}
	return nil
}

// Recover moves back onto the queue the tasks of every worker of this
// QWorker whose heartbeat has been missing for at least HeartbeatTTL (two
// looks that far apart, so a worker that only missed a beat during a Redis
// outage keeps its task). A task that reaches MaxAttempts this way goes to
// the dead-letter list.
func (q *Queue) Recover(ctx context.Context) error {
	members, err := q.rdb.SMembers(ctx, reliable.Registry(q.queue)).Result()
	if err != nil {
		return fmt.Errorf("redis SMEMBERS %s: %w", reliable.Registry(q.queue), err)
	}
	now := time.Now()
	seen := map[string]bool{}
	for _, m := range members {
		owner, _, err := reliable.SplitMember(m)
		if err != nil || owner != q.opts.Owner || m == q.member {
			continue
		}
		n, err := q.rdb.Exists(ctx, reliable.Heartbeat(q.queue, m)).Result()
		if err != nil {
			return fmt.Errorf("redis EXISTS %s: %w", reliable.Heartbeat(q.queue, m), err)
		}
		if n == 1 {
			continue
		}
		seen[m] = true
		if !q.confirmedDead(m, now) {
			continue
		}
		moved, dead, err := q.recoverMember(ctx, m, false)
		if err != nil {
			return err
		}
		if moved+dead > 0 {
			q.log.Info("recovered tasks of a dead worker", "worker", m, "requeued", moved, "deadLettered", dead)
		}
	}
	q.mu.Lock()
	for m := range q.missing {
		if !seen[m] {
			delete(q.missing, m)
		}
	}
	q.mu.Unlock()
	return nil
}

// confirmedDead records when m was first seen without heartbeat and
// reports whether that was at least HeartbeatTTL ago.
func (q *Queue) confirmedDead(m string, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	first, ok := q.missing[m]
	if !ok {
		q.missing[m] = now
		return false
	}
	if now.Sub(first) < q.opts.HeartbeatTTL {
		return false
	}
	delete(q.missing, m)
	return true
}

// recoverScript: KEYS processing, heartbeat, registry, queue, attempts,
// dead; ARGV member, maxAttempts, force. Unless forced, it does nothing
// while the heartbeat exists (checked atomically with the move).
var recoverScript = redis.NewScript(`
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[2]) == 1 then return {0, 0} end
local moved, dead = 0, 0
local max = tonumber(ARGV[2])
while true do
  local b = redis.call('RPOP', KEYS[1])
  if not b then break end
  local h = redis.sha1hex(b)
  local n = redis.call('HINCRBY', KEYS[5], h, 1)
  if max > 0 and n >= max then
    redis.call('HDEL', KEYS[5], h)
    redis.call('LPUSH', KEYS[6], b)
    dead = dead + 1
  else
    redis.call('RPUSH', KEYS[4], b)
    moved = moved + 1
  end
end
if ARGV[3] ~= '1' then redis.call('SREM', KEYS[3], ARGV[1]) end
return {moved, dead}
`)

func (q *Queue) recoverMember(ctx context.Context, member string, force bool) (moved, dead int64, err error) {
	keys := []string{reliable.Processing(q.queue, member), reliable.Heartbeat(q.queue, member), reliable.Registry(q.queue),
		q.queue, reliable.Attempts(q.queue), reliable.Dead(q.queue)}
	f := "0"
	if force {
		f = "1"
	}
	res, err := recoverScript.Run(ctx, q.rdb, keys, member, q.opts.MaxAttempts, f).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("redis recover tasks of %s: %w", member, err)
	}
	moved, dead = res[0], res[1]
	q.recovered.Add(moved)
	q.dead.Add(dead)
	if dead > 0 {
		q.log.Error("tasks dead-lettered on recovery", "worker", member, "tasks", dead, "deadList", reliable.Dead(q.queue))
	}
	return moved, dead, nil
}

// bodyHash is the task's field in the attempts hash (Lua's redis.sha1hex).
func bodyHash(body string) string {
	sum := sha1.Sum([]byte(body)) //nolint:gosec // see import
	return hex.EncodeToString(sum[:])
}

// taskID is a short printable prefix of the body, for logs.
func taskID(body string) string {
	if len(body) > 40 {
		return body[:40]
	}
	return body
}
