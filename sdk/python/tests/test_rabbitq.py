"""Runs against a real rabbitmq-server started on free loopback ports."""

import os
import signal
import subprocess
import sys
import time
import unittest

import pika

from swell_worker import Identity, Reason, RabbitQueue, Worker
from swell_worker.rabbitq import ATTEMPTS_HEADER, ERROR_HEADER, dead_letter_queue_of, retry_queue_of
from tests.brokers import RabbitMQServer
from tests.test_worker import FakeCore, FakeCustom

SDK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A consumer in its own process: takes one task, prints it, then waits
# without acknowledging, until the test SIGKILLs it.
HOLDER = """
import sys, time
from swell_worker import RabbitQueue
q = RabbitQueue.connect(sys.argv[1], sys.argv[2])
d = None
while d is None:
    d = q.take()
print(d.body.decode(), flush=True)
time.sleep(600)
"""


class RabbitQueueTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = RabbitMQServer()
        cls.conn = pika.BlockingConnection(pika.URLParameters(cls.broker.url))
        cls.ch = cls.conn.channel()

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        cls.broker.stop()

    def setUp(self):
        self.queue = self.id().rsplit(".", 1)[-1]
        self.ch.queue_declare(queue=self.queue, durable=True)
        self.ch.queue_purge(queue=self.queue)

    def publish(self, *bodies):
        for body in bodies:
            self.ch.basic_publish(exchange="", routing_key=self.queue, body=body)

    def ready_count(self, queue=None):
        return self.ch.queue_declare(queue=queue or self.queue, durable=True, passive=True).method.message_count

    def wait_ready(self, queue, want, seconds=10):
        deadline = time.monotonic() + seconds
        while self.ready_count(queue) != want:
            if time.monotonic() > deadline:
                self.fail("%d messages ready in %s, want %d" % (self.ready_count(queue), queue, want))
            time.sleep(0.05)

    def take(self, q, tries=100):
        for _ in range(tries):
            d = q.take()
            if d is not None:
                return d
        self.fail("no task arrived")
        return None

    def consumer(self, **kwargs):
        q = RabbitQueue.connect(self.broker.url, self.queue, **kwargs)
        self.addCleanup(q.close)
        return q

    def test_take_ack_and_give_back(self):
        self.publish("t0", "t1", "t2")
        q = self.consumer(backoff=0)
        d = q.take()
        self.assertEqual((d.body, d.redelivered, d.attempts), (b"t0", False, 0))
        d.ack()
        d = q.take()
        self.assertEqual(d.body, b"t1")
        d.give_back()  # no backoff: straight to the back of the queue, counted
        d = q.take()
        self.assertEqual(d.body, b"t2")
        d.ack()
        d = q.take()
        self.assertEqual((d.body, d.attempts), (b"t1", 1))
        d.ack()
        self.assertEqual(q.counters, {"acked": 3, "retried": 1, "dead_lettered": 0})

    def test_failing_task_waits_its_backoff_then_is_dead_lettered(self):
        self.publish("poison", "t1")
        q = self.consumer(max_attempts=3, backoff=2, max_backoff=2)
        retry = retry_queue_of(self.queue, 2000)
        for attempt in (1, 2, 3):
            d = self.take(q)
            self.assertEqual((d.body, d.attempts), (b"poison", attempt - 1))
            d.give_back(RuntimeError("boom %d" % attempt))
            if attempt == 3:
                break
            # Waiting out its backoff in the retry queue; the next task is
            # taken meanwhile.
            self.wait_ready(retry, 1, seconds=1)
            if attempt == 1:
                d = self.take(q)
                self.assertEqual(d.body, b"t1")
                d.ack()
        dead = dead_letter_queue_of(self.queue)
        self.wait_ready(dead, 1)
        method, props, body = self.ch.basic_get(dead, auto_ack=True)
        self.assertIsNotNone(method)
        self.assertEqual((body, props.headers[ATTEMPTS_HEADER], props.headers[ERROR_HEADER]), (b"poison", 3, "boom 3"))
        self.assertEqual((self.ready_count(), self.ready_count(retry)), (0, 0))
        self.assertEqual(q.counters, {"acked": 1, "retried": 2, "dead_lettered": 1})

    def test_quorum_queue_counts_deliveries_of_dead_consumers(self):
        queue = "quorum-" + self.queue
        self.ch.queue_declare(queue=queue, durable=True, arguments={"x-queue-type": "quorum"})
        self.ch.basic_publish(exchange="", routing_key=queue, body="crasher")
        first = RabbitQueue.connect(self.broker.url, queue, max_attempts=2)
        self.take(first)
        first.close()  # gone without a word: the broker counts a returned delivery
        q = RabbitQueue.connect(self.broker.url, queue, max_attempts=2)
        self.addCleanup(q.close)
        d = self.take(q)
        self.assertEqual(d.attempts, 1)
        d.give_back()
        self.wait_ready(dead_letter_queue_of(queue), 1)
        self.assertEqual(q.counters["dead_lettered"], 1)

    def test_take_times_out_empty(self):
        self.assertIsNone(self.consumer(block_seconds=0.2).take())

    def test_declare_creates_a_durable_queue(self):
        RabbitQueue.connect(self.broker.url, "declared-here", declare=True).close()
        self.ch.queue_declare(queue="declared-here", durable=True, passive=True)

    def test_prefetch_holds_at_most_that_many_and_close_returns_them(self):
        self.publish(*["p%d" % i for i in range(5)])
        q = RabbitQueue.connect(self.broker.url, self.queue, prefetch=2)
        q.take()  # one taken, one more waiting in this process
        self.assertEqual(self.ready_count(), 3)
        q.close()
        self.assertEqual(self.ready_count(), 5)

    def test_task_of_a_sigkilled_consumer_is_delivered_again(self):
        self.publish("held", "next")
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, self.broker.url, self.queue],
                                  stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=SDK_DIR))
        try:
            self.assertEqual(holder.stdout.readline().strip(), b"held")
            q = self.consumer(block_seconds=0.2)
            d = q.take()
            self.assertEqual(d.body, b"next")  # "held" is in the holder's hands
            d.ack()
            self.assertIsNone(q.take())
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            holder.stdout.close()
        d = None
        for _ in range(50):  # the broker notices the closed socket quickly
            d = q.take()
            if d is not None:
                break
        self.assertIsNotNone(d, "the task the killed consumer held never came back")
        self.assertEqual((d.body, d.redelivered), (b"held", True))

    def test_worker_loop_hands_a_failed_task_back_and_retires(self):
        self.publish("a", "b", "c")
        core, custom = FakeCore(), FakeCustom({"currentPodSpecHash": "h1"})
        seen = []

        def handle(body):
            seen.append(body)
            if body == b"b" and seen.count(b"b") == 1:
                raise RuntimeError("first try fails")
            if len(seen) == 4:
                core.annotations = {"swell.dev/retire": "true"}

        identity = Identity("qw", "qw-1", "ns", "h1", pulling_interval=0)
        q = self.consumer()
        reason = Worker(identity, q, core, custom).run(handle)
        q.close()  # anything taken but not acknowledged would be ready again now
        self.assertEqual(reason, Reason.RETIRED)
        # b waits out its backoff in a retry queue while c is done.
        self.assertEqual(seen, [b"a", b"b", b"c", b"b"])
        self.assertEqual((self.ready_count(), self.ready_count(retry_queue_of(self.queue, 1000))), (0, 0))
        # The exit protocol (owner references, then delete), after the
        # task counters the worker wrote to its pod (dict merge patches).
        protocol = [c[0] for c in core.calls if not (c[0] == "patch" and isinstance(c[2], dict))]
        self.assertEqual(protocol, ["patch", "delete"])


if __name__ == "__main__":
    unittest.main()
