"""At-least-once consumer of a Redis list, compatible with QScaler producers
(LPUSH; consumers take from the right).

BLMOVE moves a task atomically into a processing list owned by this pod; the
task leaves it only when acknowledged. ``recover`` moves the tasks of pods
that no longer exist back onto the queue. The key layout is the Go SDK's, so
Go and Python workers can share a queue.
"""


def processing_key(queue, pod):
    return "%s:swell:processing:%s" % (queue, pod)


class Delivery:
    """One task taken from the queue; call ack() or give_back() exactly once."""

    def __init__(self, queue, body):
        self._q = queue
        self.body = body

    def ack(self):
        self._q.redis.lrem(self._q.processing, 1, self.body)

    def give_back(self):
        pipe = self._q.redis.pipeline(transaction=True)
        pipe.lrem(self._q.processing, 1, self.body)
        pipe.rpush(self._q.queue, self.body)
        pipe.execute()


class RedisQueue:
    def __init__(self, redis, queue, pod, block_seconds=1):
        self.redis = redis
        self.queue = queue
        self.pod = pod
        self.processing = processing_key(queue, pod)
        self.block_seconds = block_seconds

    def take(self):
        """Returns a Delivery, or None when nothing arrived within the block time."""
        body = self.redis.blmove(self.queue, self.processing, self.block_seconds, "RIGHT", "LEFT")
        if body is None:
            return None
        return Delivery(self, body)


def recover(redis, queue, alive):
    """Moves the tasks held by dead pods back onto the queue; returns how many.
    alive(pod_name) -> bool says whether a pod still exists."""
    prefix = processing_key(queue, "")
    moved = 0
    for key in redis.scan_iter(match=prefix + "*", count=100):
        key = key.decode() if isinstance(key, bytes) else key
        if alive(key[len(prefix):]):
            continue
        while redis.lmove(key, queue, "RIGHT", "RIGHT") is not None:
            moved += 1
    return moved
