"""The worker loop and its lifecycle checks."""

import inspect
import json
import logging
import signal
import threading
import time

RETIRE_ANNOTATION = "swell.dev/retire"
# The worker's task counters, for the controller's wait-time target
# (targetWaitSeconds); the format is pkg/source/stats's, as the Go SDK writes it.
STATS_ANNOTATION = "swell.dev/worker-stats"
GROUP, VERSION, PLURAL = "quickube.com", "v1alpha1", "qworkers"
# The pod condition the worker sets True once its queue consumer is
# connected, just before its first task, when its pod spec lists it in
# readinessGates: the pod turns Ready (and a rollout retires an outdated pod)
# only then, not when the process starts. Same as the Go SDK's
# worker.ConditionTakingTasks.
TAKING_TASKS_CONDITION = "swell.dev/taking-tasks"

log = logging.getLogger("swell_worker")


class Reason:
    RETIRED = "Retired"
    OUTDATED = "Outdated"
    SCALE_DOWN = "ScaleDown"
    QWORKER_DELETED = "QWorkerDeleted"
    POD_DELETED = "PodDeleted"
    SIGTERM = "SIGTERM"


class PermissionMissing(RuntimeError):
    """The worker's ServiceAccount may not read its pod or QWorker: the
    worker stops at once instead of retrying forever (see the worker Role in
    docs/qworker.md)."""


def _forbidden(what, namespace, e):
    return PermissionMissing(
        "the worker's ServiceAccount may not %s in namespace %s: grant the worker Role "
        "(docs/qworker.md, config/rbac/qworker-worker): %s" % (what, namespace, getattr(e, "reason", e)))


class TaskStats:
    """Cumulative task counters, written to the pod at most once per interval
    and only when they changed: a task costs no API write, an idle worker
    writes nothing. failed counts tasks whose handler raised (handed back),
    dead_lettered the queue's dead letters; both are left out of the
    annotation while zero, as the Go SDK does."""

    def __init__(self, interval, clock=time.monotonic):
        self.interval = interval
        self.clock = clock
        self.tasks = 0
        self.busy = 0.0
        self.failed = 0
        self.dead_lettered = 0
        self._written = self._counters()
        self._last = None

    def _counters(self):
        return (self.tasks, self.busy, self.failed, self.dead_lettered)

    def task(self, seconds, failed=False):
        self.tasks += 1
        self.busy += max(seconds, 0.0)
        if failed:
            self.failed += 1

    def dead_letters(self, total):
        """Takes the queue's cumulative dead-letter count; it never goes down."""
        if isinstance(total, int) and total > self.dead_lettered:
            self.dead_lettered = total

    def due(self, force=False):
        """The annotation value to write now, or None."""
        if self._counters() == self._written:
            return None
        if not force and self._last is not None and self.clock() - self._last < self.interval:
            return None
        report = {"tasks": self.tasks, "busySeconds": round(self.busy, 3), "concurrency": 1}
        if self.failed:
            report["failed"] = self.failed
        if self.dead_lettered:
            report["deadLettered"] = self.dead_lettered
        return json.dumps(report, separators=(",", ":"))

    def written(self):
        """Records that the value from due() was written."""
        self._written = self._counters()
        self._last = self.clock()


class Worker:
    """Runs tasks until the worker should leave.

    core and custom are kubernetes.client.CoreV1Api and CustomObjectsApi
    instances (tests pass their own)."""

    def __init__(self, identity, queue, core, custom, follow_qscaler_scale_down=False, leave_when_outdated=None):
        self.id = identity
        self.queue = queue
        self.core = core
        self.custom = custom
        self.follow_qscaler_scale_down = follow_qscaler_scale_down
        # None: SWELL_LEAVE_WHEN_OUTDATED, as read into the identity.
        if leave_when_outdated is None:
            leave_when_outdated = getattr(identity, "leave_when_outdated", False)
        self.leave_when_outdated = leave_when_outdated
        self._sigterm = threading.Event()
        self._last_check = 0.0
        self.stats = TaskStats(getattr(identity, "stats_interval", 10.0))
        # The pod as last read by check(); mark_ready reads its gates.
        self._pod = None
        self._marked = False

    def install_signal_handlers(self):
        signal.signal(signal.SIGTERM, lambda *_: self._sigterm.set())

    def check(self):
        """Returns why the worker should leave now, or None. Raises
        PermissionMissing when the API refuses to show the pod or QWorker."""
        if self._sigterm.is_set():
            return Reason.SIGTERM
        try:
            pod = self.core.read_namespaced_pod(self.id.pod, self.id.namespace)
        except Exception as e:  # noqa: BLE001 - a failed check must not stop the worker
            if getattr(e, "status", None) == 404:
                return Reason.POD_DELETED
            if getattr(e, "status", None) == 403:
                raise _forbidden("get pods/%s" % self.id.pod, self.id.namespace, e) from e
            log.warning("read own pod: %s", e)
            return None
        self._pod = pod
        if pod.metadata.deletion_timestamp is not None:
            return Reason.POD_DELETED
        if (pod.metadata.annotations or {}).get(RETIRE_ANNOTATION) == "true":
            return Reason.RETIRED
        try:
            qw = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.id.namespace, PLURAL, self.id.qworker)
        except Exception as e:  # noqa: BLE001
            if getattr(e, "status", None) == 404:
                return Reason.QWORKER_DELETED
            if getattr(e, "status", None) == 403:
                raise _forbidden("get qworkers.quickube.com/%s" % self.id.qworker, self.id.namespace, e) from e
            log.warning("read QWorker: %s", e)
            return None
        status = qw.get("status") or {}
        current_hash = status.get("currentPodSpecHash", "")
        if self.leave_when_outdated and current_hash and current_hash != self.id.pod_spec_hash:
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
            if not self._marked:
                self._marked = True
                self.mark_ready()
            delivery = self.queue.take()
            if delivery is None:
                self.report_stats()
                continue
            started = time.monotonic()
            try:
                handle(delivery.body)
            except Exception as err:  # noqa: BLE001 - hand the task back, keep working
                log.exception("task failed; handing it back")
                self.stats.task(time.monotonic() - started, failed=True)
                self._settle(lambda: _give_back(delivery, err), "hand back task")
                self.report_stats()
                continue
            self.stats.task(time.monotonic() - started)
            self._settle(delivery.ack, "ack task")
            self.report_stats()
        log.info("worker stopping: %s", reason)
        self.report_stats(force=True)
        if reason not in (Reason.SIGTERM, Reason.POD_DELETED):
            self.leave()
        return reason

    @staticmethod
    def _settle(fn, what):
        # A failed settle must not stop the worker: queues retry it (the
        # Redis queue in the background) or the broker redelivers.
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            log.error("%s: %s", what, e)

    def _due_check(self):
        if self._sigterm.is_set():
            return Reason.SIGTERM
        now = time.monotonic()
        if now - self._last_check < self.id.pulling_interval:
            return None
        self._last_check = now
        return self.check()

    def mark_ready(self):
        """Sets the pod condition TAKING_TASKS_CONDITION True when the pod's
        spec gates its readiness on it and it is not True yet (run calls it
        once, before the first take). Returns whether it wrote. A refused
        write is logged naming the missing permission; the worker goes on
        (it takes tasks, its pod just does not turn Ready)."""
        pod = self._pod
        if pod is None or not _has_gate(pod, TAKING_TASKS_CONDITION) or _condition_true(pod, TAKING_TASKS_CONDITION):
            return False
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {"status": {"conditions": [{
            "type": TAKING_TASKS_CONDITION, "status": "True", "lastTransitionTime": now,
            "reason": "QueueConnected", "message": "the worker's queue consumer is connected; it takes tasks"}]}}
        try:
            self.core.patch_namespaced_pod_status(self.id.pod, self.id.namespace, body)
        except Exception as e:  # noqa: BLE001 - readiness must never stop the worker
            if getattr(e, "status", None) == 403:
                log.error("the worker's ServiceAccount may not patch pods/status in namespace %s, so pod %s "
                          "never turns Ready (its readiness gate %s stays unset): grant it with the worker Role "
                          "(docs/qworker.md, config/rbac/qworker-worker): %s",
                          self.id.namespace, self.id.pod, TAKING_TASKS_CONDITION, getattr(e, "reason", e))
            else:
                log.error("set readiness gate %s on pod %s: %s", TAKING_TASKS_CONDITION, self.id.pod, e)
            return False
        log.info("readiness gate %s set", TAKING_TASKS_CONDITION)
        return True

    def report_stats(self, force=False):
        """Writes the task counters to the pod when due (force: whenever they
        changed, the last report before leaving). A failed write is retried
        later; the counters are cumulative, so nothing is lost. The queue's
        dead-letter count (its counters["dead_lettered"], when it keeps one)
        is read now."""
        self.stats.dead_letters((getattr(self.queue, "counters", None) or {}).get("dead_lettered"))
        value = self.stats.due(force)
        if value is None:
            return
        try:
            self.core.patch_namespaced_pod(self.id.pod, self.id.namespace,
                                           {"metadata": {"annotations": {STATS_ANNOTATION: value}}})
        except Exception as e:  # noqa: BLE001 - stats must never stop the worker
            log.warning("write task stats: %s", e)
            return
        self.stats.written()

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


def _has_gate(pod, condition):
    """Whether the pod's spec lists condition in readinessGates."""
    spec = getattr(pod, "spec", None)
    return any(getattr(g, "condition_type", None) == condition for g in (getattr(spec, "readiness_gates", None) or []))


def _condition_true(pod, condition):
    """Whether the pod's condition is True."""
    status = getattr(pod, "status", None)
    return any(getattr(c, "type", None) == condition and getattr(c, "status", None) == "True"
               for c in (getattr(status, "conditions", None) or []))


def _give_back(delivery, err):
    """Hand a failed task back, with the handler's error for queues that
    record it (the RabbitMQ consumer's swell-last-error header on a
    dead-lettered task); other queues take no argument."""
    try:
        takes_error = "error" in inspect.signature(delivery.give_back).parameters
    except (TypeError, ValueError):
        takes_error = False
    if takes_error:
        delivery.give_back(error=err)
    else:
        delivery.give_back()
