"""Runs against a real redis-server started on a free loopback port."""

import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import redis

from swell_worker import RedisQueue, recover
from swell_worker.redisq import processing_key


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisQueueTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not installed: run make testbin")
        cls.dir = tempfile.mkdtemp()
        cls.port = free_port()
        cls.proc = subprocess.Popen([binary, "--port", str(cls.port), "--bind", "127.0.0.1", "--save", "", "--dir", cls.dir],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cls.r = redis.Redis(port=cls.port)
        for _ in range(100):
            try:
                cls.r.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(10)
        shutil.rmtree(cls.dir, ignore_errors=True)

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
