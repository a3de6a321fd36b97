"""Swell's Python SDK for queue workers run by a QWorker.

A worker takes one task at a time, runs the handler, and acknowledges the task
only after the handler returned. It stops taking tasks when it should leave:
the controller marked its pod for retirement (annotation ``swell.dev/retire``),
its ``POD_SPEC_HASH`` differs from the QWorker's ``status.currentPodSpecHash``
(a rollout), QScaler's rule ``desiredReplicas < currentReplicas`` holds (opt-in),
or it received SIGTERM. It then follows QScaler's exit protocol: drop its owner
references, delete its own pod, exit 0.
"""

from .identity import Identity, IdentityError
from .kafkaq import KafkaQueue
from .rabbitq import RabbitQueue
from .redisq import RedisQueue, recover
from .worker import Reason, Worker

__all__ = ["Identity", "IdentityError", "KafkaQueue", "RabbitQueue", "RedisQueue", "recover", "Reason", "Worker"]
