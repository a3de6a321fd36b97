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

from swell_worker import Identity, KafkaQueue, RabbitQueue, RedisQueue, Worker, recover

log = logging.getLogger("worker")


def pod_alive(core, namespace, me):
    """alive(pod) for recover(): a pod is dead once the API no longer has it.
    This process's own pod counts as dead: a restarted container holds none
    of the tasks its predecessor took. An API error counts as alive, so no
    task is taken from a pod that may still be working on it."""
    def alive(pod):
        if pod == me:
            return False
        try:
            core.read_namespaced_pod(pod, namespace)
            return True
        except client.ApiException as e:
            return e.status != 404
    return alive


def open_queue(broker, queue, identity, rdb, core):
    if broker == "redis":
        moved = recover(rdb, queue, pod_alive(core, identity.namespace, identity.pod))
        if moved:
            log.info("recovered %d tasks of dead pods", moved)
        return RedisQueue(rdb, queue, identity.pod)
    if broker == "rabbitmq":
        return RabbitQueue.connect(os.environ["RABBITMQ_URL"], queue,
                                   prefetch=int(os.environ.get("RABBITMQ_PREFETCH", "1")))
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
    q = open_queue(broker, queue, identity, rdb, core)
    results = os.environ.get("RESULTS", queue)
    done, times, pods = results + ":swell:done", results + ":swell:times", results + ":swell:pods"

    def handle(body):
        time.sleep(task_time)
        pipe = rdb.pipeline(transaction=True)
        pipe.sadd(done, body)
        pipe.hincrby(times, body, 1)
        pipe.hincrby(pods, identity.pod, 1)
        pipe.execute()

    worker = Worker(identity, q, core, client.CustomObjectsApi())
    worker.install_signal_handlers()
    reason = worker.run(handle)
    if hasattr(q, "close"):
        q.close()
    log.info("worker exits: %s", reason)


if __name__ == "__main__":
    main()
