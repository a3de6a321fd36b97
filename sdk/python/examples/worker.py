"""Sample worker on the Python SDK, used by the e2e tests and as a template.

It consumes one queue of the broker named by $BROKER, "works" $TASK_TIME
seconds per task, and records every finished task in Redis the way
`swell demo-worker` does: the set <results>:swell:done holds the bodies and
the hash <results>:swell:times counts how often each was finished, so a
test can count lost and duplicated tasks, and the hash <results>:swell:pods
counts each pod's finished tasks, so a test can tell which workers are busy.

Environment:
  BROKER            redis (default), rabbitmq or kafka
  QUEUE             list, queue or topic to consume (default "tasks")
  RESULTS           <results> above (default QUEUE)
  REDIS_ADDR        host:port of Redis: the queue for BROKER=redis, and where
                    finished tasks are recorded (required)
  RABBITMQ_URL      amqp://user:pass@host:port/vhost, for BROKER=rabbitmq
  RABBITMQ_PREFETCH unacknowledged messages held ahead (default 1)
  KAFKA_BROKERS     comma-separated host:port list, for BROKER=kafka
  KAFKA_GROUP       consumer group (default "<QUEUE>-workers")
  TASK_TIME         seconds per task (default 1)
  MAX_ATTEMPTS      failures before a task is dead-lettered: Redis <QUEUE>:dead, RabbitMQ <QUEUE>.dead (default 5)
  FAIL_PREFIX       tasks whose body starts with this always fail (poison
                    messages, for tests); failures are counted in the hash
                    <results>:swell:failed
  KUBECONFIG        kubeconfig path; in-cluster config when unset
plus what every QWorker pod has: QWORKER_NAME, HOSTNAME, POD_SPEC_HASH,
PULLING_INTERVAL and the namespace.
"""

import logging
import os
import sys
import time

import redis
from kubernetes import client, config

from swell_worker import Identity, KafkaQueue, RabbitQueue, RedisQueue, Worker
from swell_worker.worker import PermissionMissing

log = logging.getLogger("worker")


def open_queue(broker, queue, identity, rdb):
    if broker == "redis":
        # open() recovers the tasks this pod's previous container and this
        # QWorker's dead workers held, and keeps doing so in the background.
        owner = "%s/%s" % (identity.namespace, identity.qworker)
        return RedisQueue(rdb, queue, owner, identity.pod,
                          max_attempts=int(os.environ.get("MAX_ATTEMPTS", "5"))).open()
    if broker == "rabbitmq":
        return RabbitQueue.connect(os.environ["RABBITMQ_URL"], queue,
                                   prefetch=int(os.environ.get("RABBITMQ_PREFETCH", "1")),
                                   max_attempts=int(os.environ.get("MAX_ATTEMPTS", "5")))
    if broker == "kafka":
        return KafkaQueue.connect(os.environ["KAFKA_BROKERS"].split(","), queue,
                                  os.environ.get("KAFKA_GROUP", queue + "-workers"))
    raise ValueError("BROKER=%r: want redis, rabbitmq or kafka" % broker)


def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    broker = os.environ.get("BROKER", "redis")
    queue = os.environ.get("QUEUE", "tasks")
    task_time = float(os.environ.get("TASK_TIME", "1"))
    if not os.environ.get("REDIS_ADDR"):
        sys.exit("REDIS_ADDR is required (finished tasks are recorded there)")
    identity = Identity.from_env()
    if os.environ.get("KUBECONFIG"):
        config.load_kube_config(os.environ["KUBECONFIG"])
    else:
        config.load_incluster_config()
    core = client.CoreV1Api()
    rdb = redis.Redis.from_url("redis://" + os.environ["REDIS_ADDR"])
    q = open_queue(broker, queue, identity, rdb)
    results = os.environ.get("RESULTS", queue)
    done, times, pods = results + ":swell:done", results + ":swell:times", results + ":swell:pods"

    fail_prefix = os.environ.get("FAIL_PREFIX", "").encode()

    def handle(body):
        time.sleep(task_time)
        if fail_prefix and body.startswith(fail_prefix):
            rdb.hincrby(results + ":swell:failed", body, 1)
            raise RuntimeError("poison task (FAIL_PREFIX)")
        pipe = rdb.pipeline(transaction=True)
        pipe.sadd(done, body)
        pipe.hincrby(times, body, 1)
        pipe.hincrby(pods, identity.pod, 1)
        pipe.execute()

    worker = Worker(identity, q, core, client.CustomObjectsApi())
    worker.install_signal_handlers()
    try:
        reason = worker.run(handle)
    except PermissionMissing as e:
        sys.exit(str(e))
    finally:
        if hasattr(q, "close"):
            q.close()
    log.info("worker exits: %s", reason)


if __name__ == "__main__":
    main()
