"""Swell's Python SDK for queue workers run by a QWorker.

A worker takes one task at a time, runs the handler, and acknowledges the task
only after the handler returned. It stops taking tasks when it should leave:
the controller marked its pod for retirement (annotation ``swell.dev/retire``),
(the controller also marks the pods it replaces in a rollout, a few at a time
within ``maxSurge``), its ``POD_SPEC_HASH`` differs from the QWorker's
``status.currentPodSpecHash`` (opt-in: ``SWELL_LEAVE_WHEN_OUTDATED=true``),
QScaler's rule ``desiredReplicas < currentReplicas`` holds (opt-in), or it
received SIGTERM. It then follows QScaler's exit protocol: drop its owner
references, delete its own pod, exit 0.
"""

from .identity import Identity, IdentityError
from .kafkaq import KafkaQueue
from .rabbitq import RabbitQueue
from .redisq import RedisQueue
from .worker import Reason, Worker

__all__ = ["Identity", "IdentityError", "KafkaQueue", "RabbitQueue", "RedisQueue", "Reason", "Worker"]
