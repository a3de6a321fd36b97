"""A worker that follows QScaler's exit rule: it leaves when the QWorker's
desiredReplicas < currentReplicas (or its POD_SPEC_HASH is outdated),
dropping its owner reference and deleting its own pod. It runs the Python
SDK in follow_qscaler_scale_down mode, which is how QScaler's SDK behaves."""

import os
import sys
import time

import redis
from kubernetes import client, config

from swell_worker import Identity, RedisQueue, Worker

config.load_kube_config(os.environ["KUBECONFIG"])
identity = Identity.from_env()
r = redis.Redis.from_url("redis://" + os.environ["REDIS_ADDR"])
queue = os.environ["QUEUE"]
worker = Worker(identity, RedisQueue(r, queue, identity.pod), client.CoreV1Api(), client.CustomObjectsApi(),
                follow_qscaler_scale_down=True)
worker.install_signal_handlers()


def handle(body):
    time.sleep(0.05)
    r.sadd(queue + ":swell:done", body)


reason = worker.run(handle)
print("legacy worker leaves:", reason, flush=True)
sys.exit(0)
