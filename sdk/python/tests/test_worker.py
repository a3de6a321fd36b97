import json
import types
import unittest

from swell_worker import Identity, Reason, Worker
from swell_worker.worker import STATS_ANNOTATION, TAKING_TASKS_CONDITION, PermissionMissing, TaskStats


class ApiError(Exception):
    def __init__(self, status):
        super().__init__("status %d" % status)
        self.status = status


class FakeCore:
    def __init__(self):
        self.annotations = {}
        self.deleting = False
        self.calls = []

        self.gates = []
        self.conditions = []

    def read_namespaced_pod(self, name, ns):
        meta = types.SimpleNamespace(annotations=self.annotations, deletion_timestamp="now" if self.deleting else None)
        spec = types.SimpleNamespace(readiness_gates=[types.SimpleNamespace(condition_type=g) for g in self.gates])
        status = types.SimpleNamespace(conditions=[types.SimpleNamespace(type=t, status=s) for t, s in self.conditions])
        return types.SimpleNamespace(metadata=meta, spec=spec, status=status)

    def patch_namespaced_pod(self, name, ns, body):
        self.calls.append(("patch", name, body))

    def patch_namespaced_pod_status(self, name, ns, body):
        self.calls.append(("patch-status", name, body))
        for c in body["status"]["conditions"]:
            self.conditions = [x for x in self.conditions if x[0] != c["type"]] + [(c["type"], c["status"])]

    def delete_namespaced_pod(self, name, ns):
        self.calls.append(("delete", name))


class FakeCustom:
    def __init__(self, status):
        self.status = status
        self.gone = False

    def get_namespaced_custom_object(self, group, version, ns, plural, name):
        if self.gone:
            raise ApiError(404)
        return {"status": self.status}


class ListQueue:
    """Hands out bodies; records acks and give-backs."""

    def __init__(self, bodies, on_take=None):
        self.bodies = list(bodies)
        self.acked, self.given_back = [], []
        self.on_take = on_take

    def take(self):
        if self.on_take:
            self.on_take(len(self.acked) + len(self.given_back))
        if not self.bodies:
            return None
        body = self.bodies.pop(0)
        q = self
        return types.SimpleNamespace(body=body, ack=lambda: q.acked.append(body), give_back=lambda: q.given_back.append(body))


ID = Identity("qw", "qw-1", "ns", "h1", pulling_interval=0)


def stats_reports(core):
    """The task counters the worker wrote to its pod, in order."""
    out = []
    for c in core.calls:
        if c[0] == "patch" and isinstance(c[2], dict):
            out.append(json.loads(c[2]["metadata"]["annotations"][STATS_ANNOTATION]))
    return out


class WorkerTest(unittest.TestCase):
    def test_retire_annotation_stops_after_the_task_in_hand_and_leaves(self):
        core, custom = FakeCore(), FakeCustom({"currentPodSpecHash": "h1"})

        def on_take(done):
            if done == 2:
                core.annotations = {"swell.dev/retire": "true"}

        q = ListQueue(["a", "b", "c", "d"], on_take)
        reason = Worker(ID, q, core, custom).run(lambda body: None)
        self.assertEqual(reason, Reason.RETIRED)
        self.assertEqual(q.acked, ["a", "b", "c"])
        protocol = [c[0] for c in core.calls if not (c[0] == "patch" and isinstance(c[2], dict))]
        self.assertEqual(protocol, ["patch", "delete"])
        # The counters are flushed before the exit protocol's patch.
        self.assertIsInstance(core.calls[-3][2], dict)
        self.assertEqual(stats_reports(core)[-1]["tasks"], 3)

    def test_outdated_hash_stops_only_when_opted_in(self):
        status = {"currentPodSpecHash": "h2"}
        self.assertIsNone(Worker(ID, ListQueue([]), FakeCore(), FakeCustom(status)).check())
        core, custom = FakeCore(), FakeCustom(status)
        q = ListQueue(["a"])
        self.assertEqual(Worker(ID, q, core, custom, leave_when_outdated=True).run(lambda body: None), Reason.OUTDATED)
        self.assertEqual(q.acked, [])
        env_id = Identity.from_env({"QWORKER_NAME": "qw", "HOSTNAME": "p", "POD_NAMESPACE": "ns",
                                    "POD_SPEC_HASH": "h1", "SWELL_LEAVE_WHEN_OUTDATED": "true"})
        self.assertEqual(Worker(env_id, ListQueue([]), FakeCore(), FakeCustom(status)).check(), Reason.OUTDATED)

    def test_forbidden_read_fails_naming_the_permission(self):
        class Forbidden(FakeCustom):
            def get_namespaced_custom_object(self, *args):
                raise ApiError(403)

        w = Worker(ID, ListQueue(["a"]), FakeCore(), Forbidden({}))
        with self.assertRaises(PermissionMissing) as cm:
            w.run(lambda body: None)
        self.assertIn("get qworkers.quickube.com/", str(cm.exception))

    def test_failed_ack_does_not_stop_the_worker(self):
        core, custom = FakeCore(), FakeCustom({"currentPodSpecHash": "h1"})
        done = []

        q = ListQueue(["a", "b"])
        acks = iter([RuntimeError("redis down"), None])

        def take():
            d = ListQueue.take(q)
            if d is None:
                custom.gone = True
            else:
                err = next(acks)

                def ack(body=d.body, err=err):
                    if err:
                        raise err
                    q.acked.append(body)
                d.ack = ack
            return d
        q.take = take
        self.assertEqual(Worker(ID, q, core, custom).run(done.append), Reason.QWORKER_DELETED)
        self.assertEqual(done, ["a", "b"])
        self.assertEqual(q.acked, ["b"])

    def test_qscaler_scale_down_rule_is_opt_in(self):
        status = {"currentPodSpecHash": "h1", "desiredReplicas": 1, "currentReplicas": 3}
        self.assertIsNone(Worker(ID, ListQueue([]), FakeCore(), FakeCustom(status)).check())
        w = Worker(ID, ListQueue([]), FakeCore(), FakeCustom(status), follow_qscaler_scale_down=True)
        self.assertEqual(w.check(), Reason.SCALE_DOWN)

    def test_failed_task_is_given_back(self):
        core, custom = FakeCore(), FakeCustom({"currentPodSpecHash": "h1"})

        def on_take(done):
            if done == 1:
                custom.gone = True

        q = ListQueue(["bad"], on_take)

        def handle(body):
            raise RuntimeError("boom")

        self.assertEqual(Worker(ID, q, core, custom).run(handle), Reason.QWORKER_DELETED)
        self.assertEqual(q.given_back, ["bad"])

    def test_failed_task_carries_its_error_to_queues_that_record_it(self):
        core, custom = FakeCore(), FakeCustom({"currentPodSpecHash": "h1"})
        errors = []
        q = ListQueue(["bad"], lambda done: setattr(custom, "gone", len(errors) == 1))

        def take():
            d = ListQueue.take(q)
            if d is not None:
                d.give_back = lambda error=None: errors.append(error)
            return d

        q.take = take

        def handle(body):
            raise RuntimeError("boom")

        Worker(ID, q, core, custom).run(handle)
        self.assertEqual([str(e) for e in errors], ["boom"])

    def test_sigterm_does_not_delete_the_pod(self):
        core, custom = FakeCore(), FakeCustom({"currentPodSpecHash": "h1"})
        w = Worker(ID, ListQueue([]), core, custom)
        w._sigterm.set()
        self.assertEqual(w.run(lambda body: None), Reason.SIGTERM)
        self.assertEqual(core.calls, [])


class ReadinessGateTest(unittest.TestCase):
    def status_patches(self, core):
        return [c for c in core.calls if c[0] == "patch-status"]

    def test_gated_pod_is_marked_once_before_the_first_take(self):
        core, custom = FakeCore(), FakeCustom({"currentPodSpecHash": "h1"})
        core.gates = [TAKING_TASKS_CONDITION]
        seen = []

        def on_take(done):
            seen.append(len(self.status_patches(core)))
            if done == 2:
                core.annotations["swell.dev/retire"] = "true"

        w = Worker(ID, ListQueue(["a", "b"], on_take), core, custom)
        self.assertEqual(w.run(lambda body: None), Reason.RETIRED)
        self.assertEqual(seen[0], 1, "the condition was not set before the first take")
        patches = self.status_patches(core)
        self.assertEqual(len(patches), 1)
        cond = patches[0][2]["status"]["conditions"][0]
        self.assertEqual((cond["type"], cond["status"]), (TAKING_TASKS_CONDITION, "True"))

    def test_ungated_or_already_set_pod_gets_no_write(self):
        for gates, conditions in (([], []), ([TAKING_TASKS_CONDITION], [(TAKING_TASKS_CONDITION, "True")])):
            core, custom = FakeCore(), FakeCustom({"currentPodSpecHash": "h1"})
            core.gates, core.conditions = gates, conditions
            core.annotations["swell.dev/retire"] = "true"
            w = Worker(ID, ListQueue([]), core, custom)
            w.check()
            self.assertFalse(w.mark_ready())
            self.assertEqual(self.status_patches(core), [])

    def test_forbidden_write_is_logged_naming_the_permission_and_the_worker_goes_on(self):
        core, custom = FakeCore(), FakeCustom({"currentPodSpecHash": "h1"})
        core.gates = [TAKING_TASKS_CONDITION]

        def refuse(name, ns, body):
            raise ApiError(403)

        core.patch_namespaced_pod_status = refuse

        def on_take(done):
            if done == 1:
                core.annotations["swell.dev/retire"] = "true"

        q = ListQueue(["a"], on_take)
        w = Worker(ID, q, core, custom)
        with self.assertLogs("swell_worker", level="ERROR") as logs:
            self.assertEqual(w.run(lambda body: None), Reason.RETIRED)
        self.assertEqual(q.acked, ["a"])
        self.assertTrue(any("may not patch pods/status" in m for m in logs.output), logs.output)


class TaskStatsTest(unittest.TestCase):
    def test_writes_only_changes_at_most_once_per_interval(self):
        now = [100.0]
        st = TaskStats(10, clock=lambda: now[0])
        self.assertIsNone(st.due(), "an idle worker must not write")
        st.task(0.5)
        first = st.due()
        self.assertEqual(json.loads(first), {"tasks": 1, "busySeconds": 0.5, "concurrency": 1})
        st.written()
        for _ in range(50):
            st.task(0.2)
        now[0] += 5
        self.assertIsNone(st.due(), "wrote twice within the interval")
        self.assertEqual(json.loads(st.due(force=True))["tasks"], 51, "leaving flushes at once")
        now[0] += 5
        self.assertEqual(json.loads(st.due()), {"tasks": 51, "busySeconds": 10.5, "concurrency": 1})
        st.written()
        now[0] += 60
        self.assertIsNone(st.due(), "nothing changed, yet a write is due")

    def test_failed_write_is_retried_not_lost(self):
        core, custom = FakeCore(), FakeCustom({"currentPodSpecHash": "h1"})
        w = Worker(ID, ListQueue([]), core, custom)
        w.stats.task(1.0)

        def refuse(name, ns, body):
            raise ApiError(500)

        core.patch_namespaced_pod = refuse
        w.report_stats()
        del core.patch_namespaced_pod
        w.report_stats(force=True)
        self.assertEqual(stats_reports(core), [{"tasks": 1, "busySeconds": 1.0, "concurrency": 1}])


    def test_failed_and_dead_lettered_tasks_are_reported(self):
        core, custom = FakeCore(), FakeCustom({"currentPodSpecHash": "h1"})

        def on_take(done):
            if done == 3:
                core.annotations = {"swell.dev/retire": "true"}

        q = ListQueue(["ok", "bad", "bad"], on_take)
        q.counters = {"acked": 0, "retried": 0, "dead_lettered": 0}

        def give_back():
            q.given_back.append("bad")
            q.counters["dead_lettered"] += 1

        take = q.take

        def take_counting():
            d = take()
            if d is not None and d.body == "bad":
                d.give_back = give_back
            return d

        q.take = take_counting

        def handle(body):
            if body == "bad":
                raise ValueError("cannot handle")

        with self.assertLogs("swell_worker", level="ERROR"):
            Worker(ID, q, core, custom).run(handle)
        last = stats_reports(core)[-1]
        self.assertEqual((last["tasks"], last["failed"], last["deadLettered"]), (3, 2, 2))

    def test_zero_failures_are_left_out(self):
        st = TaskStats(10)
        st.task(1.0)
        st.dead_letters(0)
        st.dead_letters(None)
        self.assertEqual(json.loads(st.due()), {"tasks": 1, "busySeconds": 1.0, "concurrency": 1})
        st.task(1.0, failed=True)
        st.dead_letters(1)
        self.assertEqual(json.loads(st.due(force=True)),
                         {"tasks": 2, "busySeconds": 2.0, "concurrency": 1, "failed": 1, "deadLettered": 1})


if __name__ == "__main__":
    unittest.main()
