"""The worker's identity, read from the env QScaler's controller sets."""

import os
from dataclasses import dataclass

NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class IdentityError(ValueError):
    """The environment lacks what a QWorker pod always has."""


@dataclass(frozen=True)
class Identity:
    qworker: str
    pod: str
    namespace: str
    pod_spec_hash: str
    pulling_interval: float = 5.0
    # How often, at most, the task counters are written to the pod
    # (SWELL_STATS_INTERVAL seconds, default 10).
    stats_interval: float = 10.0
    # Leave as soon as the QWorker's pod-spec hash differs from ours
    # (SWELL_LEAVE_WHEN_OUTDATED=true); by default the worker waits for the
    # controller's retire mark, so a rollout keeps ready capacity.
    leave_when_outdated: bool = False

    @classmethod
    def from_env(cls, env=None):
        """Reads QWORKER_NAME, HOSTNAME, POD_SPEC_HASH, PULLING_INTERVAL and the
        namespace (POD_NAMESPACE or the service-account file)."""
        env = os.environ if env is None else env
        namespace = env.get("POD_NAMESPACE", "")
        if not namespace and os.path.exists(NAMESPACE_FILE):
            with open(NAMESPACE_FILE, encoding="utf-8") as f:
                namespace = f.read().strip()
        missing = [name for name, value in (
            ("QWORKER_NAME", env.get("QWORKER_NAME", "")),
            ("HOSTNAME", env.get("HOSTNAME", "")),
            ("POD_SPEC_HASH", env.get("POD_SPEC_HASH", "")),
            ("POD_NAMESPACE (or %s)" % NAMESPACE_FILE, namespace),
        ) if not value]
        if missing:
            raise IdentityError("worker identity: %s not set" % ", ".join(missing))
        raw = env.get("PULLING_INTERVAL", "5")
        try:
            interval = float(raw)
        except ValueError:
            interval = -1
        if interval <= 0:
            raise IdentityError("PULLING_INTERVAL=%r: want a positive number of seconds" % raw)
        raw_stats = env.get("SWELL_STATS_INTERVAL", "10")
        try:
            stats_interval = float(raw_stats)
        except ValueError:
            stats_interval = -1
        if stats_interval <= 0:
            raise IdentityError("SWELL_STATS_INTERVAL=%r: want a positive number of seconds" % raw_stats)
        raw_leave = env.get("SWELL_LEAVE_WHEN_OUTDATED", "false").strip().lower()
        if raw_leave not in ("true", "false", "1", "0", ""):
            raise IdentityError("SWELL_LEAVE_WHEN_OUTDATED=%r: want true or false" % raw_leave)
        return cls(env["QWORKER_NAME"], env["HOSTNAME"], namespace, env["POD_SPEC_HASH"], interval, stats_interval,
                   raw_leave in ("true", "1"))
