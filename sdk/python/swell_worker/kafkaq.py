"""At-least-once consumer of a Kafka topic in a consumer group (kafka-python).

Auto-commit is off: ``ack()`` commits the offset after the task's, once the
handler returned, so a worker that dies mid-task leaves the offset where it
was and the partition's next owner processes the task again.
``give_back()`` counts a failed attempt and seeks the partition back to the
task, so this consumer takes it again next (Kafka has no per-message
requeue: a partition is ordered), after a backoff during which the partition
is paused (1 s doubling up to 60 s). After ``max_attempts`` failures (5) the
record goes to the dead-letter topic ``<topic>.dead`` instead, with the Go
SDK's headers (``swell-original-topic``, ``-partition``, ``-offset``,
``swell-attempts``, ``swell-last-error``), and its offset is committed, so
one poison record does not hold its partition for ever. Attempts are counted
by this consumer: a record that moves to another worker starts again.

Tasks are taken one at a time and each is acknowledged or given back before
the next, so committing offset + 1 never skips an unfinished task. When the
group rebalances while a task is in hand and its partition moves to another
worker, the commit is refused; the task then runs twice, never zero times.
kafka-python 2.0 rebalances eagerly (every member gives up its partitions
for a moment); it has no cooperative protocol.

Snappy-compressed batches (franz-go producers write them by default) need
python-snappy (Debian: python3-snappy); without it take() raises on the
first such batch, and connect() warns.

``KafkaQueue`` has the same ``take()`` / ``Delivery`` shape as
``RedisQueue``, so ``Worker.run`` drives it unchanged. At most as many
workers as the topic has partitions receive tasks.
"""

import logging
import time

log = logging.getLogger("swell_worker")

DEFAULT_MAX_ATTEMPTS = 5
TOPIC_HEADER = "swell-original-topic"
PARTITION_HEADER = "swell-original-partition"
OFFSET_HEADER = "swell-original-offset"
ATTEMPTS_HEADER = "swell-attempts"
ERROR_HEADER = "swell-last-error"
_MAX_ERROR_LEN = 1024
# KafkaConsumer settings a dead-letter producer shares (how to reach and
# authenticate to the same cluster).
_SHARED_CONFIG = ("bootstrap_servers", "client_id", "security_protocol", "ssl_context", "ssl_check_hostname",
                  "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password", "ssl_crlfile", "ssl_ciphers",
                  "sasl_mechanism", "sasl_plain_username", "sasl_plain_password", "sasl_kerberos_service_name",
                  "sasl_kerberos_domain_name", "sasl_oauth_token_provider", "api_version")


def dead_letter_topic_of(topic):
    return "%s.dead" % topic


class Delivery:
    """One record taken from a partition; call ack() or give_back() exactly once."""

    def __init__(self, queue, record):
        self._q = queue
        self.record = record
        self.body = record.value

    def ack(self):
        """Commits the offset after this record. A commit the group refuses
        (the partition moved in a rebalance) is logged, not raised: the
        partition's new owner will run the task again."""
        if self._commit():
            self._q.counters["acked"] += 1

    def _commit(self):
        """Commits past this record; False when the group refused."""
        from kafka.errors import CommitFailedError
        from kafka.structs import OffsetAndMetadata, TopicPartition

        tp = TopicPartition(self.record.topic, self.record.partition)
        self._q.attempts.pop(self._key(), None)
        try:
            self._q.consumer.commit({tp: OffsetAndMetadata(self.record.offset + 1, None)})
        except CommitFailedError as e:
            log.warning("commit %s offset %d refused (rebalanced): %s", tp, self.record.offset, e)
            return False
        return True

    def give_back(self, error=None):
        """Counts a failed attempt. Before max_attempts the partition is
        sought back to this record and paused for the backoff; at
        max_attempts the record is produced to the dead-letter topic (with
        ``error``) and committed past. When the dead-letter produce fails
        the record is kept (sought back) and the error raised."""
        from kafka.structs import TopicPartition

        q = self._q
        n = q.attempts.get(self._key(), 0) + 1
        tp = TopicPartition(self.record.topic, self.record.partition)
        if 0 < q.max_attempts <= n:
            try:
                q.dead_letter(self.record, n, error)
            except Exception:
                self._seek_back(tp)
                raise
            self._commit()
            q.counters["dead_lettered"] += 1
            log.error("task dead-lettered after %d attempts into topic %s: %.40r (%s)",
                      n, q.dead_letter_topic or dead_letter_topic_of(self.record.topic), self.body, error)
            return
        q.attempts[self._key()] = n
        self._seek_back(tp)
        wait = q.backoff(n)
        if wait > 0 and tp in q.consumer.assignment():
            q.consumer.pause(tp)
            q.paused[tp] = time.monotonic() + wait
        q.counters["retried"] += 1
        log.warning("task failed (attempt %d of %d); retrying in %.3gs: %.40r", n, q.max_attempts, wait, self.body)

    def _key(self):
        return (self.record.topic, self.record.partition, self.record.offset)

    def _seek_back(self, tp):
        if tp in self._q.consumer.assignment():
            self._q.consumer.seek(tp, self.record.offset)


class KafkaQueue:
    """Takes records one at a time from a kafka.KafkaConsumer that was
    created with enable_auto_commit=False (see connect())."""

    def __init__(self, consumer, block_seconds=1, max_attempts=DEFAULT_MAX_ATTEMPTS, backoff_seconds=1.0,
                 max_backoff=60.0, dead_letter_topic=None, producer=None):
        if consumer.config.get("enable_auto_commit"):
            raise ValueError("KafkaQueue needs a consumer with enable_auto_commit=False")
        self.consumer = consumer
        self.block_ms = int(block_seconds * 1000)
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff = max_backoff
        self.dead_letter_topic = dead_letter_topic
        self._producer = producer
        self._own_producer = producer is None
        self.attempts = {}  # (topic, partition, offset) -> failed attempts here
        self.paused = {}  # TopicPartition -> monotonic time its backoff ends
        self.counters = {"acked": 0, "retried": 0, "dead_lettered": 0}
        self._topics_ready = set()

    @classmethod
    def connect(cls, bootstrap_servers, topic, group, block_seconds=1, max_attempts=DEFAULT_MAX_ATTEMPTS,
                backoff_seconds=1.0, max_backoff=60.0, dead_letter_topic=None, **consumer_config):
        """Creates a consumer of topic in group, starting from the earliest
        offset when the group has none; consumer_config adds KafkaConsumer
        options (TLS, SASL, ...), which the dead-letter producer shares.
        max_attempts 0 or less never dead-letters; dead_letter_topic
        defaults to ``<topic>.dead``."""
        from kafka import KafkaConsumer  # only Kafka consumers need kafka-python installed
        from kafka.codec import has_snappy

        if not has_snappy():
            log.warning("python-snappy is not installed: snappy-compressed records cannot be read")
        consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap_servers, group_id=group,
                                 enable_auto_commit=False, auto_offset_reset="earliest", **consumer_config)
        return cls(consumer, block_seconds, max_attempts, backoff_seconds, max_backoff, dead_letter_topic)

    def take(self):
        """Returns a Delivery, or None when nothing arrived within the block time."""
        self._resume_due()
        batches = self.consumer.poll(timeout_ms=self.block_ms, max_records=1)
        for records in batches.values():
            for record in records:
                return Delivery(self, record)
        return None

    def backoff(self, n):
        """Seconds to wait after the n-th failure (1 = first)."""
        if self.backoff_seconds <= 0:
            return 0
        return min(self.backoff_seconds * 2 ** (n - 1), self.max_backoff)

    def dead_letter(self, record, attempts, error):
        """Produces record to the dead-letter topic and waits for the broker
        to confirm it."""
        headers = list(record.headers or []) + [
            (TOPIC_HEADER, record.topic.encode()),
            (PARTITION_HEADER, str(record.partition).encode()),
            (OFFSET_HEADER, str(record.offset).encode()),
            (ATTEMPTS_HEADER, str(attempts).encode()),
        ]
        if error is not None:
            headers.append((ERROR_HEADER, str(error)[:_MAX_ERROR_LEN].encode()))
        topic = self.dead_letter_topic or dead_letter_topic_of(record.topic)
        self._ensure_topic(topic)
        self.producer().send(topic, value=record.value, key=record.key, headers=headers).get(timeout=30)

    def _ensure_topic(self, topic):
        """Creates the dead-letter topic once when it is missing: one
        partition, replicated on up to 3 brokers. A failure is logged; the
        produce then relies on the broker creating topics on demand."""
        if topic in self._topics_ready:
            return
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(**self._shared_config())
        try:
            replicas = max(1, min(3, len(admin.describe_cluster().get("brokers", []))))
            admin.create_topics([NewTopic(topic, 1, replicas)])
        except TopicAlreadyExistsError:
            pass
        except Exception as e:  # noqa: BLE001 - the produce reports what matters
            log.warning("create dead-letter topic %s: %s", topic, e)
        finally:
            admin.close()
        self._topics_ready.add(topic)

    def _shared_config(self):
        return {k: self.consumer.config[k] for k in _SHARED_CONFIG if self.consumer.config.get(k) is not None}

    def producer(self):
        """The dead-letter producer, made on first use with the consumer's
        connection settings."""
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(**self._shared_config())
        return self._producer

    def _resume_due(self):
        now = time.monotonic()
        due = [tp for tp, until in self.paused.items() if until <= now]
        for tp in due:
            del self.paused[tp]
            if tp in self.consumer.assignment():
                self.consumer.resume(tp)

    def close(self):
        """Leaves the group; uncommitted records go to the partitions' next owners."""
        self.consumer.close(autocommit=False)
        if self._producer is not None and self._own_producer:
            self._producer.close()
