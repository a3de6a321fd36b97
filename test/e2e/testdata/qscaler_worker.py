"""A queue worker that behaves as QScaler's Python SDK (quickube/qscaler-python-sdk)
does, written for Swell's tests from that SDK's published behaviour:

- Configuration from QWORKER_NAME, POD_SPEC_HASH, HOSTNAME (the pod) and
  PULLING_INTERVAL (default 2 seconds when unset).
- At start it reads its QWorker and ScalerConfig and validates them as the
  SDK's pydantic models do: spec.scaleConfig needs queue, minReplicas,
  maxReplicas, scalerConfigRef, scalingFactor (an integer) and activateVPA
  (a boolean); status needs currentReplicas, desiredReplicas and
  currentPodSpecHash; the ScalerConfig must be of type redis with host, an
  integer port and a password key ({value} or {secret: {name, key}}; other
  forms read as no password). A missing or mistyped field stops the worker
  with a non-zero exit, as the SDK's validation error does.
- Loop: re-read the QWorker; leave if desiredReplicas - currentReplicas < 0
  or POD_SPEC_HASH differs from status.currentPodSpecHash. Otherwise BRPOP
  the queue with PULLING_INTERVAL as timeout; a message is unpickled and,
  if truthy, handled.
- Leaving (graceful): remove the pod's owner references, then delete the
  pod, then exit.
- SIGTERM/SIGINT (forced): push the task in hand back with LPUSH, pickled —
  None when idle — then exit.

Test harness differences, none in the protocol: the kube API is reached
through KUBECONFIG and the namespace is POD_NAMESPACE (a process node has no
in-cluster mount); the queue and results live on the Redis of the
ScalerConfig. Each handled task (a pickled str id) sleeps TASK_SECONDS, then
increments its field in the hash <RESULTS>:times and adds a pod field in
<RESULTS>:pods.

With --check it only validates the QWorker (and its ScalerConfig) named by
QWORKER_NAME, printing what the SDK would refuse, and exits 0 or 1.
"""

import os
import pickle
import signal
import sys
import time

from kubernetes import client, config as kubeconfig

GROUP, VERSION = "quickube.com", "v1alpha1"


class ForceShutdown(Exception):
    pass


def as_int(v, field):
    # pydantic's lax int: ints, integral floats and numeric strings; not bools.
    if isinstance(v, bool):
        raise ValueError(f"{field}: {v!r} is not an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("+-").isdigit():
        return int(v)
    raise ValueError(f"{field}: {v!r} is not an integer")


def as_str(v, field):
    if not isinstance(v, str):
        raise ValueError(f"{field}: {v!r} is not a string")
    return v


def as_bool(v, field):
    if isinstance(v, bool):
        return v
    raise ValueError(f"{field}: {v!r} is not a boolean")


def require(obj, key, path):
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"{path}.{key}: field required")
    return obj[key]


def scale_config(qw):
    sc = require(require(qw, "spec", "qworker"), "scaleConfig", "spec")
    p = "spec.scaleConfig"
    return {
        "queue": as_str(require(sc, "queue", p), p + ".queue"),
        "minReplicas": as_int(require(sc, "minReplicas", p), p + ".minReplicas"),
        "maxReplicas": as_int(require(sc, "maxReplicas", p), p + ".maxReplicas"),
        "scalerConfigRef": as_str(require(sc, "scalerConfigRef", p), p + ".scalerConfigRef"),
        "scalingFactor": as_int(require(sc, "scalingFactor", p), p + ".scalingFactor"),
        "activateVPA": as_bool(require(sc, "activateVPA", p), p + ".activateVPA"),
    }


def status_of(qw):
    st = require(qw, "status", "qworker")
    return {
        "currentReplicas": as_int(require(st, "currentReplicas", "status"), "status.currentReplicas"),
        "desiredReplicas": as_int(require(st, "desiredReplicas", "status"), "status.desiredReplicas"),
        "currentPodSpecHash": as_str(require(st, "currentPodSpecHash", "status"), "status.currentPodSpecHash"),
    }


def redis_config(sc):
    spec = require(sc, "spec", "scalerconfig")
    if require(spec, "type", "spec") != "redis":
        raise ValueError(f"spec.type: scaler type {spec['type']!r} is not implemented")
    cfg = require(spec, "config", "spec")
    pw = require(cfg, "password", "spec.config")
    if pw is not None and not isinstance(pw, dict):
        raise ValueError("spec.config.password: not an object")
    secret = (pw or {}).get("secret")
    if secret is not None:
        secret = {"name": as_str(require(secret, "name", "spec.config.password.secret"), "name"),
                  "key": as_str(require(secret, "key", "spec.config.password.secret"), "key")}
    return {
        "host": as_str(require(cfg, "host", "spec.config"), "spec.config.host"),
        "port": as_int(require(cfg, "port", "spec.config"), "spec.config.port"),
        "password": (pw or {}).get("value"),
        "secret": secret,
    }


class Worker:
    def __init__(self):
        kubeconfig.load_kube_config(os.environ["KUBECONFIG"])
        self.ns = os.environ["POD_NAMESPACE"]
        self.name = os.environ["QWORKER_NAME"]
        self.pod = os.environ.get("HOSTNAME", "")
        self.hash = os.environ.get("POD_SPEC_HASH")
        self.interval = float(os.environ.get("PULLING_INTERVAL", 2))
        self.custom = client.CustomObjectsApi()
        self.core = client.CoreV1Api()
        self.current_task = None

    def qworker(self):
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "qworkers", self.name)

    def scaler_config(self, ref):
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "scalerconfigs", ref)

    def check(self):
        qw = self.qworker()
        sc = scale_config(qw)
        redis_config(self.scaler_config(sc["scalerConfigRef"]))
        status_of(qw)

    def connect(self):
        import redis
        sc = scale_config(self.qworker())
        cfg = redis_config(self.scaler_config(sc["scalerConfigRef"]))
        password = cfg["password"]
        if cfg["secret"] is not None:
            import base64
            s = self.core.read_namespaced_secret(cfg["secret"]["name"], self.ns)
            password = base64.b64decode(s.data[cfg["secret"]["key"]]).decode()
        self.redis = redis.Redis(host=cfg["host"], port=cfg["port"], password=password)
        self.results = os.environ["RESULTS"]
        self.task_seconds = float(os.environ.get("TASK_SECONDS", "0.2"))

    def should_leave(self):
        st = status_of(self.qworker())
        return st["desiredReplicas"] - st["currentReplicas"] < 0 or self.hash != st["currentPodSpecHash"]

    def queue(self):
        return scale_config(self.qworker())["queue"]

    def work(self):
        got = self.redis.brpop(self.queue(), timeout=self.interval)
        self.current_task = None if got is None else pickle.loads(got[1])
        if self.current_task:
            self.handle(self.current_task)
            self.current_task = None

    def handle(self, task):
        time.sleep(self.task_seconds)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(self.results + ":times", task, 1)
        pipe.hincrby(self.results + ":pods", self.pod, 1)
        pipe.execute()

    def graceful(self):
        print("leaving: the QWorker's status asks for fewer workers or a new spec", flush=True)
        self.core.patch_namespaced_pod(self.pod, self.ns, {"metadata": {"ownerReferences": None}})
        self.redis.close()
        self.core.delete_namespaced_pod(self.pod, self.ns)

    def forced(self):
        print("SIGTERM: handing back", repr(self.current_task), flush=True)
        self.redis.lpush(self.queue(), pickle.dumps(self.current_task))
        self.redis.close()

    def run(self):
        def force(*_):
            raise ForceShutdown()
        signal.signal(signal.SIGTERM, force)
        signal.signal(signal.SIGINT, force)
        try:
            while not self.should_leave():
                self.work()
        except ForceShutdown:
            self.forced()
            return
        self.graceful()


def main():
    w = Worker()
    if "--check" in sys.argv:
        try:
            w.check()
        except (ValueError, KeyError) as e:
            print("QScaler SDK would refuse:", e, flush=True)
            return 1
        print("QScaler SDK models accept the QWorker and its ScalerConfig", flush=True)
        return 0
    w.connect()
    w.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
