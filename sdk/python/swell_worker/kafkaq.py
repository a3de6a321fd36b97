"""At-least-once consumer of a Kafka topic in a consumer group (kafka-python).

Auto-commit is off: ``ack()`` commits the offset after the task's, once the
handler returned, so a worker that dies mid-task leaves the offset where it
was and the partition's next owner processes the task again.
``give_back()`` seeks the partition back to the task, so this consumer takes
it again next (Kafka has no per-message requeue: a partition is ordered).

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

log = logging.getLogger("swell_worker")


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
        from kafka.errors import CommitFailedError
        from kafka.structs import OffsetAndMetadata, TopicPartition

        tp = TopicPartition(self.record.topic, self.record.partition)
        try:
            self._q.consumer.commit({tp: OffsetAndMetadata(self.record.offset + 1, None)})
        except CommitFailedError as e:
            log.warning("commit %s offset %d refused (rebalanced): %s", tp, self.record.offset, e)

    def give_back(self):
        """Seeks the partition back to this record so it is taken again."""
        from kafka.structs import TopicPartition

        tp = TopicPartition(self.record.topic, self.record.partition)
        if tp in self._q.consumer.assignment():
            self._q.consumer.seek(tp, self.record.offset)


class KafkaQueue:
    """Takes records one at a time from a kafka.KafkaConsumer that was
    created with enable_auto_commit=False (see connect())."""

    def __init__(self, consumer, block_seconds=1):
        if consumer.config.get("enable_auto_commit"):
            raise ValueError("KafkaQueue needs a consumer with enable_auto_commit=False")
        self.consumer = consumer
        self.block_ms = int(block_seconds * 1000)

    @classmethod
    def connect(cls, bootstrap_servers, topic, group, block_seconds=1, **consumer_config):
        """Creates a consumer of topic in group, starting from the earliest
        offset when the group has none; consumer_config adds KafkaConsumer
        options (TLS, SASL, ...)."""
        from kafka import KafkaConsumer  # only Kafka consumers need kafka-python installed
        from kafka.codec import has_snappy

        if not has_snappy():
            log.warning("python-snappy is not installed: snappy-compressed records cannot be read")
        consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap_servers, group_id=group,
                                 enable_auto_commit=False, auto_offset_reset="earliest", **consumer_config)
        return cls(consumer, block_seconds)

    def take(self):
        """Returns a Delivery, or None when nothing arrived within the block time."""
        batches = self.consumer.poll(timeout_ms=self.block_ms, max_records=1)
        for records in batches.values():
            for record in records:
                return Delivery(self, record)
        return None

    def close(self):
        """Leaves the group; uncommitted records go to the partitions' next owners."""
        self.consumer.close(autocommit=False)
