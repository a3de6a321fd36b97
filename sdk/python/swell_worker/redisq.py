"""At-least-once consumer of a Redis list, compatible with QScaler producers
(LPUSH; consumers take from the right).

BLMOVE moves a task atomically into a processing list owned by this worker
(``<queue>:swell:processing:<namespace>/<qworker>/<pod>``); the task leaves
it only when acknowledged. While the worker runs, a background thread keeps
its heartbeat key (``<queue>:swell:alive:<member>``, TTL ``heartbeat_ttl``)
alive and, every ``recover_every`` seconds, moves back onto the queue the
tasks of workers of the same QWorker whose heartbeat has been missing for a
TTL. A failed task waits out a doubling backoff in ``<queue>:swell:delayed``
and goes to ``<queue>:dead`` after ``max_attempts`` failures; an ack that
fails (Redis unreachable) is retried in the background. The key layout and
scripts are the Go SDK's (pkg/source/redis/reliable), so Go and Python
workers can share a queue and the Redis source counts dead workers' tasks.
"""

import hashlib
import logging
import threading
import time

log = logging.getLogger("swell_worker.redisq")

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_HEARTBEAT_TTL = 15.0


def member(owner, pod):
    return "%s/%s" % (owner, pod)


def processing_key(queue, member_):
    return "%s:swell:processing:%s" % (queue, member_)


def heartbeat_key(queue, member_):
    return "%s:swell:alive:%s" % (queue, member_)


def registry_key(queue):
    return "%s:swell:workers" % queue


def attempts_key(queue):
    return "%s:swell:attempts" % queue


def delayed_key(queue):
    return "%s:swell:delayed" % queue


def dead_key(queue):
    return "%s:dead" % queue


# The same scripts as sdk/go/queue/redisq.
_GIVE_BACK = """
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
"""

_MOVE_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  local i = string.find(m, ':', 1, true)
  redis.call('RPUSH', KEYS[2], string.sub(m, i + 1))
end
return #due
"""

_RECOVER = """
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
"""

_UNREGISTER = """
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
return 0
"""


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


class Delivery:
    """One task taken from the queue; call ack() or give_back() exactly once."""

    def __init__(self, queue, body):
        self._q = queue
        self.body = body

    def ack(self):
        """Removes the task; if Redis does not answer, the ack is retried in
        the background (the task stays held meanwhile) and the error raised."""
        try:
            self._q._ack(self.body)
        except Exception:
            self._q._defer(lambda: self._q._ack(self.body))
            raise

    def give_back(self):
        """Counts a failed attempt: the task comes back after a backoff, or
        goes to <queue>:dead after max_attempts failures."""
        try:
            self._q._give_back(self.body)
        except Exception:
            self._q._defer(lambda: self._q._give_back(self.body))
            raise


class RedisQueue:
    """owner is "<namespace>/<qworker>": only workers of the same QWorker
    recover each other's tasks. Call open() before take() and close() at the
    end (Worker does neither: the example worker shows the order)."""

    def __init__(self, redis, queue, owner, pod, max_attempts=DEFAULT_MAX_ATTEMPTS, backoff=1.0,
                 max_backoff=60.0, heartbeat_ttl=DEFAULT_HEARTBEAT_TTL, recover_every=30.0, block_seconds=1):
        ns, _, name = owner.partition("/")
        if not ns or not name or "/" in name:
            raise ValueError("owner %r: want <namespace>/<qworker name>" % owner)
        if not pod:
            raise ValueError("pod is required")
        if heartbeat_ttl < 3:
            raise ValueError("heartbeat_ttl %r: want at least 3 seconds" % heartbeat_ttl)
        self.redis = redis
        self.queue = queue
        self.owner = owner
        self.pod = pod
        self.member = member(owner, pod)
        self.processing = processing_key(queue, self.member)
        self.heartbeat = heartbeat_key(queue, self.member)
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.heartbeat_ttl = heartbeat_ttl
        self.recover_every = recover_every
        self.block_seconds = block_seconds
        self.counters = {"acked": 0, "retried": 0, "dead_lettered": 0, "recovered": 0, "settle_retries": 0}
        self._give_back_script = redis.register_script(_GIVE_BACK)
        self._move_due = redis.register_script(_MOVE_DUE)
        self._recover = redis.register_script(_RECOVER)
        self._unregister = redis.register_script(_UNREGISTER)
        self._lock = threading.Lock()
        self._pending = []
        self._missing = {}
        self._stop = threading.Event()
        self._thread = None

    def open(self):
        """Recovers what this pod's previous container held, registers, sends
        the first heartbeat, recovers dead workers' tasks and starts the
        background thread."""
        self._recover_member(self.member, force=True)
        self._beat()
        try:
            self.recover()
        except Exception as e:  # noqa: BLE001 - retried by the thread
            log.warning("recover tasks of dead workers: %s", e)
        self._thread = threading.Thread(target=self._maintain, name="swell-redisq", daemon=True)
        self._thread.start()
        return self

    def close(self):
        """Stops the thread, retries failed settles once, drops the heartbeat
        (what is still held gets recovered by others) and the registration
        when nothing is held."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._flush()
        self.redis.delete(self.heartbeat)
        self._unregister(keys=[self.processing, registry_key(self.queue)], args=[self.member])

    def take(self):
        """Returns a Delivery, or None when nothing arrived within the block time."""
        body = self.redis.blmove(self.queue, self.processing, self.block_seconds, "RIGHT", "LEFT")
        if body is None:
            return None
        return Delivery(self, body)

    def _ack(self, body):
        pipe = self.redis.pipeline(transaction=True)
        pipe.lrem(self.processing, 1, body)
        pipe.hdel(attempts_key(self.queue), hashlib.sha1(_bytes(body)).hexdigest())  # noqa: S324 - a field name, as Lua's sha1hex
        pipe.execute()
        self.counters["acked"] += 1

    def _give_back(self, body):
        keys = [self.processing, self.queue, attempts_key(self.queue), dead_key(self.queue), delayed_key(self.queue)]
        backoff_ms = int(self.backoff * 1000) if self.backoff > 0 else 0
        outcome, attempts = self._give_back_script(
            keys=keys, args=[body, self.max_attempts, backoff_ms, int(self.max_backoff * 1000)])
        outcome = _text(outcome)
        if outcome == "dead":
            self.counters["dead_lettered"] += 1
            log.error("task dead-lettered after %s attempts into %s: %.40r", attempts, dead_key(self.queue), body)
        elif outcome in ("delayed", "queued"):
            self.counters["retried"] += 1
            log.warning("task failed (attempt %s of %s); retrying: %.40r", attempts, self.max_attempts, body)

    def _defer(self, settle):
        with self._lock:
            self._pending.append(settle)

    def _flush(self):
        with self._lock:
            todo, self._pending = self._pending, []
        again = []
        for settle in todo:
            try:
                settle()
            except Exception:  # noqa: BLE001 - kept for the next try
                again.append(settle)
                continue
            self.counters["settle_retries"] += 1
            log.info("settled a task after a failed try")
        with self._lock:
            self._pending = again + self._pending

    def _beat(self):
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self.heartbeat, self.pod, px=int(self.heartbeat_ttl * 1000))
        pipe.sadd(registry_key(self.queue), self.member)
        pipe.execute()

    def _maintain(self):
        last_beat = last_recover = time.monotonic()
        while not self._stop.wait(1.0):
            now = time.monotonic()
            try:
                if now - last_beat >= self.heartbeat_ttl / 3:
                    self._beat()
                    last_beat = now
                self._flush()
                self._move_due(keys=[delayed_key(self.queue), self.queue])
                if now - last_recover >= self.recover_every or self._suspect_due(now):
                    last_recover = now
                    self.recover()
            except Exception as e:  # noqa: BLE001 - the next tick retries
                log.warning("redis queue maintenance: %s", e)

    def _suspect_due(self, now):
        with self._lock:
            return any(now - first >= self.heartbeat_ttl for first in self._missing.values())

    def recover(self):
        """Moves back the tasks of this QWorker's workers whose heartbeat has
        been missing for a TTL (seen missing twice that far apart); returns
        how many it requeued."""
        now = time.monotonic()
        seen, moved = set(), 0
        prefix = self.owner + "/"
        for m in self.redis.smembers(registry_key(self.queue)):
            m = _text(m)
            if not m.startswith(prefix) or "/" in m[len(prefix):] or m == self.member:
                continue
            if self.redis.exists(heartbeat_key(self.queue, m)):
                continue
            seen.add(m)
            with self._lock:
                first = self._missing.setdefault(m, now)
            if now - first < self.heartbeat_ttl:
                continue
            with self._lock:
                self._missing.pop(m, None)
            n, dead = self._recover_member(m)
            moved += n
            if n or dead:
                log.info("recovered tasks of dead worker %s: %d requeued, %d dead-lettered", m, n, dead)
        with self._lock:
            for m in [m for m in self._missing if m not in seen]:
                del self._missing[m]
        return moved

    def _recover_member(self, m, force=False):
        keys = [processing_key(self.queue, m), heartbeat_key(self.queue, m), registry_key(self.queue),
                self.queue, attempts_key(self.queue), dead_key(self.queue)]
        moved, dead = self._recover(keys=keys, args=[m, self.max_attempts, "1" if force else "0"])
        self.counters["recovered"] += moved
        self.counters["dead_lettered"] += dead
        if dead:
            log.error("%d tasks of %s dead-lettered on recovery into %s", dead, m, dead_key(self.queue))
        return moved, dead


def _bytes(v):
    return v.encode() if isinstance(v, str) else v
