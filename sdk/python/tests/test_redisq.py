"""Runs against a real redis-server started on a free loopback port."""

import hashlib
import time
import unittest

from swell_worker import RedisQueue
from swell_worker.redisq import attempts_key, dead_key, heartbeat_key, member, processing_key, registry_key
from tests.brokers import RedisServer


class RedisQueueTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = RedisServer()
        cls.r = cls.broker.client

    @classmethod
    def tearDownClass(cls):
        cls.broker.stop()

    def setUp(self):
        self.r.flushall()
        self.opened = []

    def tearDown(self):
        for q in self.opened:
            q.close()

    def open(self, queue, owner, pod, **kw):
        q = RedisQueue(self.r, queue, owner, pod, **kw).open()
        self.opened.append(q)
        return q

    def test_bad_options_name_the_field(self):
        for kw, word in (({"owner": "ns"}, "owner"), ({"owner": "ns/qw", "pod": ""}, "pod"),
                         ({"owner": "ns/qw", "heartbeat_ttl": 1}, "heartbeat_ttl")):
            args = {"owner": "ns/qw", "pod": "p"}
            args.update(kw)
            with self.assertRaises(ValueError) as cm:
                RedisQueue(self.r, "q", args.pop("owner"), args.pop("pod"), **args)
            self.assertIn(word, str(cm.exception))

    def test_take_ack_give_back(self):
        for i in range(3):
            self.r.lpush("tasks", "t%d" % i)
        q = self.open("tasks", "ns/qw", "pod-a", backoff=0)
        held = processing_key("tasks", member("ns/qw", "pod-a"))
        self.assertEqual(held, "tasks:swell:processing:ns/qw/pod-a")  # the Go SDK's layout
        d = q.take()
        self.assertEqual(d.body, b"t0")
        self.assertEqual(self.r.llen(held), 1)
        d.ack()
        self.assertEqual(self.r.llen(held), 0)
        q.take().give_back()
        again = q.take()
        self.assertEqual(again.body, b"t1")
        self.assertEqual(self.r.hget(attempts_key("tasks"), hashlib.sha1(b"t1").hexdigest()), b"1")
        again.ack()
        self.assertEqual(self.r.hlen(attempts_key("tasks")), 0)

    def test_recovery_is_per_qworker_and_waits_a_ttl(self):
        def put(owner, pod, alive, *bodies):
            m = member(owner, pod)
            self.r.sadd(registry_key("q"), m)
            for b in bodies:
                self.r.lpush(processing_key("q", m), b)
            if alive:
                self.r.set(heartbeat_key("q", m), pod, ex=60)
        put("ns1/qw", "dead", False, "d1", "d2")
        put("ns1/qw", "alive", True, "a1")
        put("ns2/qw", "other", False, "o1")
        put("ns1/qw", "me", True, "m1")
        q = self.open("q", "ns1/qw", "me", heartbeat_ttl=3)
        self.assertEqual(self.r.lrange("q", 0, -1), [b"m1"])
        deadline = time.monotonic() + 30
        while self.r.llen("q") < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual(sorted(self.r.lrange("q", 0, -1)), [b"d1", b"d2", b"m1"])
        self.assertEqual(self.r.llen(processing_key("q", member("ns1/qw", "alive"))), 1)
        self.assertEqual(self.r.llen(processing_key("q", member("ns2/qw", "other"))), 1)
        self.assertFalse(self.r.sismember(registry_key("q"), member("ns1/qw", "dead")))
        self.assertEqual(q.counters["recovered"], 3)

    def test_poison_task_is_dead_lettered(self):
        for i in range(10):
            self.r.lpush("jobs", "ok-%d" % i)
        self.r.lpush("jobs", "poison")
        q = self.open("jobs", "ns/qw", "p", max_attempts=3, backoff=0.1)
        done, handled = [], 0
        deadline = time.monotonic() + 30
        while (len(done) < 10 or not self.r.llen(dead_key("jobs"))) and time.monotonic() < deadline:
            d = q.take()
            if d is None:
                continue
            handled += 1
            if d.body == b"poison":
                d.give_back()
                continue
            done.append(d.body)
            d.ack()
        self.assertEqual(self.r.lrange(dead_key("jobs"), 0, -1), [b"poison"])
        self.assertEqual(handled, 13)
        self.assertEqual(len(set(done)), 10)
        self.assertEqual(q.counters["dead_lettered"], 1)
        self.assertEqual(q.counters["retried"], 2)

    def test_take_times_out_empty(self):
        self.assertIsNone(self.open("empty", "ns/qw", "p").take())


if __name__ == "__main__":
    unittest.main()
