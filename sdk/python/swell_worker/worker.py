"""The worker loop and its lifecycle checks."""

import logging
import signal
import threading
import time

RETIRE_ANNOTATION = "swell.dev/retire"
GROUP, VERSION, PLURAL = "quickube.com", "v1alpha1", "qworkers"

log = logging.getLogger("swell_worker")


class Reason:
    RETIRED = "Retired"
    OUTDATED = "Outdated"
    SCALE_DOWN = "ScaleDown"
    QWORKER_DELETED = "QWorkerDeleted"
    POD_DELETED = "PodDeleted"
    SIGTERM = "SIGTERM"


class Worker:
    """Runs tasks until the worker should leave.

    core and custom are kubernetes.client.CoreV1Api and CustomObjectsApi
    instances (tests pass their own)."""

    def __init__(self, identity, queue, core, custom, follow_qscaler_scale_down=False):
        self.id = identity
        self.queue = queue
        self.core = core
        self.custom = custom
        self.follow_qscaler_scale_down = follow_qscaler_scale_down
        self._sigterm = threading.Event()
        self._last_check = 0.0

    def install_signal_handlers(self):
        signal.signal(signal.SIGTERM, lambda *_: self._sigterm.set())

    def check(self):
        """Returns why the worker should leave now, or None."""
        if self._sigterm.is_set():
            return Reason.SIGTERM
        try:
            pod = self.core.read_namespaced_pod(self.id.pod, self.id.namespace)
        except Exception as e:  # noqa: BLE001 - a failed check must not stop the worker
            if getattr(e, "status", None) == 404:
                return Reason.POD_DELETED
            log.warning("read own pod: %s", e)
            return None
        if pod.metadata.deletion_timestamp is not None:
            return Reason.POD_DELETED
        if (pod.metadata.annotations or {}).get(RETIRE_ANNOTATION) == "true":
            return Reason.RETIRED
        try:
            qw = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.id.namespace, PLURAL, self.id.qworker)
        except Exception as e:  # noqa: BLE001
            if getattr(e, "status", None) == 404:
                return Reason.QWORKER_DELETED
            log.warning("read QWorker: %s", e)
            return None
        status = qw.get("status") or {}
        current_hash = status.get("currentPodSpecHash", "")
        if current_hash and current_hash != self.id.pod_spec_hash:
            return Reason.OUTDATED
        if self.follow_qscaler_scale_down:
            desired, current = status.get("desiredReplicas"), status.get("currentReplicas")
            if desired is not None and current is not None and desired < current:
                return Reason.SCALE_DOWN
        return None

    def run(self, handle):
        """Takes tasks and calls handle(body) for each until the worker should
        leave; returns the reason. An exception from handle gives the task back."""
        reason = None
        while reason is None:
            reason = self._due_check()
            if reason is not None:
                break
            delivery = self.queue.take()
            if delivery is None:
                continue
            try:
                handle(delivery.body)
            except Exception:  # noqa: BLE001 - hand the task back, keep working
                log.exception("task failed; handing it back")
                delivery.give_back()
                continue
            delivery.ack()
        log.info("worker stopping: %s", reason)
        if reason not in (Reason.SIGTERM, Reason.POD_DELETED):
            self.leave()
        return reason

    def _due_check(self):
        if self._sigterm.is_set():
            return Reason.SIGTERM
        now = time.monotonic()
        if now - self._last_check < self.id.pulling_interval:
            return None
        self._last_check = now
        return self.check()

    def leave(self):
        """QScaler's exit protocol: drop owner references, delete own pod."""
        try:
            self.core.patch_namespaced_pod(self.id.pod, self.id.namespace,
                                           [{"op": "remove", "path": "/metadata/ownerReferences"}])
        except Exception as e:  # noqa: BLE001
            log.warning("drop owner reference: %s", e)
        try:
            self.core.delete_namespaced_pod(self.id.pod, self.id.namespace)
        except Exception as e:  # noqa: BLE001
            if getattr(e, "status", None) != 404:
                log.warning("delete own pod: %s", e)
