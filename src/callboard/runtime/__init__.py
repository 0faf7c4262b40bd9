"""Structured-concurrency primitives: actors and supervisors.

Nothing here knows about jobs, HTTP or SQL; `callboard.actors` builds on it.
"""

from .actor import Actor, ActorStatistics, Startable
from .supervisor import (
    ChildSpec,
    ChildStatistics,
    Restart,
    Strategy,
    Supervisor,
    SupervisorEscalation,
    SupervisorStatistics,
)

__all__ = [
    "Actor",
    "ActorStatistics",
    "ChildSpec",
    "ChildStatistics",
    "Restart",
    "Startable",
    "Strategy",
    "Supervisor",
    "SupervisorEscalation",
    "SupervisorStatistics",
]
