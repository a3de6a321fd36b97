"""Runs against a real redis-server started on a free loopback port."""

import unittest

from swell_worker import RedisQueue, recover
from swell_worker.redisq import processing_key
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

    def test_take_ack_give_back_and_recover(self):
        for i in range(3):
            self.r.lpush("tasks", "t%d" % i)
        q = RedisQueue(self.r, "tasks", "pod-a")
        d = q.take()
        self.assertEqual(d.body, b"t0")
        self.assertEqual(self.r.llen(processing_key("tasks", "pod-a")), 1)
        d.ack()
        self.assertEqual(self.r.llen(processing_key("tasks", "pod-a")), 0)
        d = q.take()
        d.give_back()
        self.assertEqual(q.take().body, b"t1")
        RedisQueue(self.r, "tasks", "pod-b").take()
        moved = recover(self.r, "tasks", lambda pod: pod == "pod-b")
        self.assertEqual(moved, 1)
        self.assertEqual(self.r.lrange("tasks", 0, -1), [b"t1"])
        self.assertEqual(self.r.llen(processing_key("tasks", "pod-b")), 1)

    def test_take_times_out_empty(self):
        self.assertIsNone(RedisQueue(self.r, "empty", "p").take())


if __name__ == "__main__":
    unittest.main()
