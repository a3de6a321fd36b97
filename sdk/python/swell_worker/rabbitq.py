"""At-least-once consumer of a RabbitMQ queue (pika, manual acknowledgements).

The broker keeps every message it delivers unacknowledged until the worker
calls ``ack()`` (``basic.ack``) after the handler returned; ``give_back()``
(``basic.nack`` with requeue) puts it back for another worker. When a
consumer's connection closes for any reason (exit, crash, SIGKILL, a lost
network) the broker requeues everything that connection held, so unlike the
Redis list there is nothing to recover by hand. ``prefetch`` bounds how many
unacknowledged messages the broker pushes to one consumer ahead of time:
those wait in this process, are never handed to the handler twice, and go
back to the queue when the consumer closes or dies.

A task whose handler fails is not nacked back to the head of the queue:
``give_back()`` republishes a copy carrying its attempt count in the header
``swell-attempts``, waits for the broker's publisher confirm (the channel is
put in confirm mode), and only then acknowledges the original, so nothing is
lost and the count survives (a worker that dies between the two leaves both,
and the task runs once more). The copy waits out a doubling backoff in a
retry queue ``<queue>.retry.<ms>ms`` (message TTL, dead-lettered back onto
``<queue>`` by RabbitMQ) and, after ``max_attempts`` failures, goes to the
dead-letter exchange ``<queue>.dlx`` instead, declared here with the queue
``<queue>.dead`` bound to it. This is the Go SDK's topology (sdk/go/queue/
rabbitq), so Go and Python workers can share a queue; it works on classic
and quorum queues alike, and on a quorum queue the broker's
``x-delivery-count`` (deliveries whose worker died) adds to the attempts.

``RabbitQueue`` has the same ``take()`` / ``Delivery`` shape as
``RedisQueue``, so ``Worker.run`` drives it unchanged.

The connection is pika's ``BlockingConnection``: it answers broker
heartbeats only while the worker is inside ``take()``. A handler that runs
longer than the negotiated heartbeat timeout gets its connection closed
(and its task redelivered); raise the timeout for such handlers, e.g.
``?heartbeat=600`` in the URL.
"""


import logging

log = logging.getLogger("swell_worker.rabbitq")

DEFAULT_MAX_ATTEMPTS = 5
ATTEMPTS_HEADER = "swell-attempts"
ERROR_HEADER = "swell-last-error"
_DELIVERY_COUNT_HEADER = "x-delivery-count"  # a quorum queue's count of returned deliveries
_MAX_ERROR_LEN = 1024


def dead_letter_exchange_of(queue):
    return "%s.dlx" % queue


def dead_letter_queue_of(queue):
    return "%s.dead" % queue


def retry_queue_of(queue, delay_ms):
    return "%s.retry.%dms" % (queue, delay_ms)


def attempts(headers):
    """Failures of a task before this delivery: the consumers' count plus a
    quorum queue's count of deliveries returned since (dead workers)."""
    headers = headers or {}
    total = 0
    for key in (ATTEMPTS_HEADER, _DELIVERY_COUNT_HEADER):
        value = headers.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            total += value
    return total


class Delivery:
    """One message taken from the queue; call ack() or give_back() exactly once.

    ``redelivered`` is the broker's flag: another consumer (or this one) had
    this message before and did not acknowledge it. ``attempts`` is how many
    times the task failed before."""

    def __init__(self, queue, tag, properties, body, redelivered):
        self._queue = queue
        self._channel = queue.channel
        self._tag = tag
        self._properties = properties
        self.body = body
        self.redelivered = redelivered
        self.attempts = attempts(properties.headers if properties else None)

    def ack(self):
        self._channel.basic_ack(delivery_tag=self._tag)
        self._queue.counters["acked"] += 1

    def give_back(self, error=None):
        """Counts a failed attempt: a confirmed copy goes to the retry queue
        of its backoff, or to the dead-letter exchange (with ``error``) after
        max_attempts failures, then the original is acknowledged. When the
        copy cannot be published the original is nacked back to the queue
        (that attempt is not counted) and the error raised."""
        q = self._queue
        n = self.attempts + 1
        props = self._copy_properties(n)
        dead = 0 < q.max_attempts <= n
        exchange, key, wait = "", q.queue, 0
        try:
            if dead:
                exchange = q.dead_letter_exchange
                if error is not None:
                    props.headers[ERROR_HEADER] = str(error)[:_MAX_ERROR_LEN]
            else:
                wait = q.backoff(n)
                if wait > 0:
                    key = q.declare_retry(wait)
            self._channel.basic_publish(exchange=exchange, routing_key=key, body=self.body, properties=props)
        except Exception:
            try:
                self._channel.basic_nack(delivery_tag=self._tag, requeue=True)
            except Exception as e:  # noqa: BLE001 - a closed channel requeues it anyway
                log.warning("nack after a failed hand-back: %s", e)
            raise
        self._channel.basic_ack(delivery_tag=self._tag)
        if dead:
            q.counters["dead_lettered"] += 1
            log.error("task dead-lettered after %d attempts into exchange %s: %.40r (%s)", n, exchange, self.body, error)
        else:
            q.counters["retried"] += 1
            log.warning("task failed (attempt %d of %d); retrying in %.3gs: %.40r", n, q.max_attempts, wait, self.body)

    def _copy_properties(self, n):
        """The original's properties with the new count, minus what must not
        travel: the quorum queue's delivery count (folded in), a per-message
        TTL, a user id the broker would check against this connection."""
        import pika

        p = self._properties or pika.BasicProperties()
        headers = dict(p.headers or {})
        headers.pop(_DELIVERY_COUNT_HEADER, None)
        headers[ATTEMPTS_HEADER] = n
        return pika.BasicProperties(
            content_type=p.content_type, content_encoding=p.content_encoding, headers=headers,
            delivery_mode=p.delivery_mode, priority=p.priority, correlation_id=p.correlation_id,
            reply_to=p.reply_to, message_id=p.message_id, timestamp=p.timestamp, type=p.type, app_id=p.app_id)


class RabbitQueue:
    """Consumes one queue on a channel of a pika BlockingConnection.

    take() waits at most block_seconds for a message. The channel's prefetch
    count is set here; the queue must exist unless declare is true, in which
    case it is declared durable (QScaler and Swell's tests declare it so).
    A failed task is retried after ``backoff`` seconds, doubled per failure
    up to ``max_backoff`` (0: straight to the back of the queue), and goes to
    ``dead_letter_exchange`` after ``max_attempts`` failures (0 or less:
    never). The default exchange ``<queue>.dlx`` and its queue
    ``<queue>.dead`` are declared here; an exchange named instead must exist.
    ``counters`` counts acked, retried and dead-lettered tasks."""

    def __init__(self, channel, queue, prefetch=1, block_seconds=1, declare=False, max_attempts=DEFAULT_MAX_ATTEMPTS,
                 backoff=1.0, max_backoff=60.0, dead_letter_exchange=None):
        if prefetch < 1:
            raise ValueError("prefetch=%r: want at least 1" % prefetch)
        self.channel = channel
        self.queue = queue
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff
        self.max_backoff = max_backoff
        self.dead_letter_exchange = dead_letter_exchange or dead_letter_exchange_of(queue)
        self.counters = {"acked": 0, "retried": 0, "dead_lettered": 0}
        self._retry_declared = set()
        self._connection = None  # set by connect(), closed by close()
        if declare:
            channel.queue_declare(queue=queue, durable=True)
        channel.confirm_delivery()
        if dead_letter_exchange is None:
            channel.exchange_declare(exchange=self.dead_letter_exchange, exchange_type="direct", durable=True)
            channel.queue_declare(queue=dead_letter_queue_of(queue), durable=True)
            channel.queue_bind(queue=dead_letter_queue_of(queue), exchange=self.dead_letter_exchange, routing_key=queue)
        channel.basic_qos(prefetch_count=prefetch)
        self._messages = channel.consume(queue, auto_ack=False, inactivity_timeout=block_seconds)

    def backoff(self, n):
        """Seconds to wait after the n-th failure (1 = first), in whole ms."""
        if self.backoff_seconds <= 0:
            return 0
        return round(min(self.backoff_seconds * 2 ** (n - 1), self.max_backoff), 3)

    def declare_retry(self, wait):
        """Declares (once) the retry queue for wait seconds and returns its
        name: its messages expire after wait onto the default exchange,
        routed to the queue."""
        ms = int(round(wait * 1000))
        name = retry_queue_of(self.queue, ms)
        if name not in self._retry_declared:
            self.channel.queue_declare(queue=name, durable=True, arguments={
                "x-message-ttl": ms, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.queue})
            self._retry_declared.add(name)
        return name

    @classmethod
    def connect(cls, url, queue, **kwargs):
        """Opens a connection to url (amqp://user:pass@host:port/vhost) and
        consumes queue on a new channel; close() closes the connection."""
        import pika  # only consumers that connect here need pika installed

        conn = pika.BlockingConnection(pika.URLParameters(url))
        try:
            q = cls(conn.channel(), queue, **kwargs)
        except Exception:
            conn.close()
            raise
        q._connection = conn
        return q

    def take(self):
        """Returns a Delivery, or None when nothing arrived within the block time."""
        method, properties, body = next(self._messages)
        if method is None:
            return None
        return Delivery(self, method.delivery_tag, properties, body, method.redelivered)
    def close(self):
        """Cancels the consumer, which requeues prefetched messages not yet
        taken, and closes the connection if connect() opened it. Messages
        taken but not acknowledged go back to the queue with the connection."""
        if self.channel.is_open:
            self.channel.cancel()
        if self._connection is not None and self._connection.is_open:
            self._connection.close()
