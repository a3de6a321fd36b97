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

``RabbitQueue`` has the same ``take()`` / ``Delivery`` shape as
``RedisQueue``, so ``Worker.run`` drives it unchanged.

The connection is pika's ``BlockingConnection``: it answers broker
heartbeats only while the worker is inside ``take()``. A handler that runs
longer than the negotiated heartbeat timeout gets its connection closed
(and its task redelivered); raise the timeout for such handlers, e.g.
``?heartbeat=600`` in the URL.
"""


class Delivery:
    """One message taken from the queue; call ack() or give_back() exactly once.

    ``redelivered`` is the broker's flag: another consumer (or this one) had
    this message before and did not acknowledge it."""

    def __init__(self, channel, tag, body, redelivered):
        self._channel = channel
        self._tag = tag
        self.body = body
        self.redelivered = redelivered

    def ack(self):
        self._channel.basic_ack(delivery_tag=self._tag)

    def give_back(self):
        """basic.nack with requeue: the message returns to the queue."""
        self._channel.basic_nack(delivery_tag=self._tag, requeue=True)


class RabbitQueue:
    """Consumes one queue on a channel of a pika BlockingConnection.

    take() waits at most block_seconds for a message. The channel's prefetch
    count is set here; the queue must exist unless declare is true, in which
    case it is declared durable (QScaler and Swell's tests declare it so)."""

    def __init__(self, channel, queue, prefetch=1, block_seconds=1, declare=False):
        if prefetch < 1:
            raise ValueError("prefetch=%r: want at least 1" % prefetch)
        self.channel = channel
        self.queue = queue
        self._connection = None  # set by connect(), closed by close()
        if declare:
            channel.queue_declare(queue=queue, durable=True)
        channel.basic_qos(prefetch_count=prefetch)
        self._messages = channel.consume(queue, auto_ack=False, inactivity_timeout=block_seconds)

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
        method, _properties, body = next(self._messages)
        if method is None:
            return None
        return Delivery(self.channel, method.delivery_tag, body, method.redelivered)

    def close(self):
        """Cancels the consumer, which requeues prefetched messages not yet
        taken, and closes the connection if connect() opened it. Messages
        taken but not acknowledged go back to the queue with the connection."""
        if self.channel.is_open:
            self.channel.cancel()
        if self._connection is not None and self._connection.is_open:
            self._connection.close()
