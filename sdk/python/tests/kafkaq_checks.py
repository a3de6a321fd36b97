"""KafkaQueue against a real Kafka-protocol broker at $KAFKA_BROKERS.

No Kafka broker is packaged by Debian; the e2e suite's broker is franz-go's
kfake, which runs inside the Go test process. So this module is not named
test_*.py (make test-python does not collect it): test/e2e runs it with
KAFKA_BROKERS set (TestPythonKafkaQueue). Without the variable it fails."""

import os
import signal
import subprocess
import sys
import time
import unittest
import uuid

from swell_worker import Identity, Reason, Worker
from swell_worker.kafkaq import KafkaQueue
from tests.test_worker import FakeCore, FakeCustom

SDK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Takes one record without committing it, prints it, waits to be SIGKILLed.
HOLDER = """
import sys, time
from swell_worker.kafkaq import KafkaQueue
q = KafkaQueue.connect(sys.argv[1], sys.argv[2], sys.argv[3])
d = None
while d is None:
    d = q.take()
print(d.body.decode(), flush=True)
time.sleep(600)
"""


def bootstrap():
    addr = os.environ.get("KAFKA_BROKERS", "")
    if not addr:
        raise RuntimeError("KAFKA_BROKERS is not set: test/e2e runs this module against its broker")
    return addr.split(",")


class KafkaQueueTest(unittest.TestCase):
    def setUp(self):
        from kafka import KafkaProducer
        from kafka.admin import KafkaAdminClient, NewTopic

        self.servers = bootstrap()
        self.topic = "py-" + uuid.uuid4().hex[:8]
        self.group = self.topic + "-group"
        admin = KafkaAdminClient(bootstrap_servers=self.servers)
        admin.create_topics([NewTopic(self.topic, 1, 1)])
        admin.close()
        self.producer = KafkaProducer(bootstrap_servers=self.servers)
        self.addCleanup(self.producer.close)

    def publish(self, *bodies):
        for body in bodies:
            self.producer.send(self.topic, body.encode())
        self.producer.flush()

    def consumer(self):
        q = KafkaQueue.connect(self.servers, self.topic, self.group)
        self.addCleanup(q.close)
        return q

    def take(self, q, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            d = q.take()
            if d is not None:
                return d
        self.fail("no record within %ss" % timeout)

    def test_ack_commits_and_give_back_takes_again(self):
        self.publish("k0", "k1", "k2")
        q = self.consumer()
        self.take(q).ack()
        d = self.take(q)
        self.assertEqual(d.body, b"k1")
        d.give_back()
        d = self.take(q)
        self.assertEqual(d.body, b"k1")
        d.ack()
        q.close()
        # A new member of the group starts after the last commit.
        self.assertEqual(self.take(self.consumer()).body, b"k2")

    def test_reads_snappy_compressed_batches(self):
        # franz-go producers compress with snappy by default; reading them
        # needs python3-snappy (pip: python-snappy) beside kafka-python.
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.servers, compression_type="snappy")
        self.addCleanup(producer.close)
        producer.send(self.topic, b"compressed")
        producer.flush()
        d = self.take(self.consumer())
        self.assertEqual(d.body, b"compressed")
        d.ack()

    def test_enable_auto_commit_is_refused(self):
        from kafka import KafkaConsumer

        c = KafkaConsumer(bootstrap_servers=self.servers, enable_auto_commit=True)
        self.addCleanup(c.close)
        with self.assertRaises(ValueError):
            KafkaQueue(c)

    def test_task_of_a_sigkilled_consumer_is_delivered_again(self):
        self.publish("held", "after")
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, ",".join(self.servers), self.topic, self.group],
                                  stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=SDK_DIR))
        try:
            self.assertEqual(holder.stdout.readline().strip(), b"held")
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            holder.stdout.close()
        # The group hands the partition over once the dead member's session
        # times out; its uncommitted record comes first.
        self.assertEqual(self.take(self.consumer(), timeout=60).body, b"held")

    def test_poison_record_is_dead_lettered_after_max_attempts(self):
        from kafka import KafkaConsumer

        self.publish("poison", "next")
        q = KafkaQueue.connect(self.servers, self.topic, self.group, max_attempts=3, backoff_seconds=0.05)
        self.addCleanup(q.close)
        for attempt in range(1, 4):
            d = self.take(q)
            self.assertEqual(d.body, b"poison", "attempt %d" % attempt)
            d.give_back(error=RuntimeError("boom %d" % attempt))
        d = self.take(q)
        self.assertEqual(d.body, b"next", "the poison record still holds the partition")
        d.ack()
        self.assertEqual(q.counters, {"acked": 1, "retried": 2, "dead_lettered": 1})

        dead = KafkaConsumer(self.topic + ".dead", bootstrap_servers=self.servers, auto_offset_reset="earliest",
                             group_id=self.group + "-dead-reader", consumer_timeout_ms=30000)
        self.addCleanup(dead.close)
        records = [next(iter(dead))]
        self.assertEqual(records[0].value, b"poison")
        headers = {k: v.decode() for k, v in records[0].headers}
        self.assertEqual(headers["swell-original-topic"], self.topic)
        self.assertEqual(headers["swell-original-partition"], "0")
        self.assertEqual(headers["swell-original-offset"], "0")
        self.assertEqual(headers["swell-attempts"], "3")
        self.assertEqual(headers["swell-last-error"], "boom 3")
        q.close()
        # Both records were committed past: a new member finds nothing.
        self.publish("after")
        self.assertEqual(self.take(self.consumer()).body, b"after")

    def test_worker_loop_drives_it(self):
        self.publish("a", "b", "c")
        core, custom = FakeCore(), FakeCustom({"currentPodSpecHash": "h1"})
        seen = []

        def handle(body):
            seen.append(body)
            if body == b"b" and seen.count(b"b") == 1:
                raise RuntimeError("first try fails")
            if len(seen) == 4:
                core.annotations = {"swell.dev/retire": "true"}

        q = self.consumer()
        reason = Worker(Identity("qw", "qw-1", "ns", "h1", pulling_interval=0), q, core, custom).run(handle)
        self.assertEqual(reason, Reason.RETIRED)
        self.assertEqual(seen, [b"a", b"b", b"b", b"c"])
        q.close()
        self.publish("d")
        self.assertEqual(self.take(self.consumer()).body, b"d")  # a, b, c were all committed


if __name__ == "__main__":
    unittest.main()
