"""The pure core of the factory: job state machine, cluster, scheduler.

Nothing here performs I/O, starts threads or reads the clock: every entry point
takes the current time as an argument. Both the live shell and the twin drive it.
"""

from aifactory.core.actions import Action, Kill, Launch, Preempt, StateChanged
from aifactory.core.cluster import Cluster, Node, NodeSpec
from aifactory.core.errors import (
    AifactoryError,
    InvalidTransition,
    NotFound,
    SpecError,
    UnknownName,
)
from aifactory.core.events import (
    Cancel,
    Checkpoint,
    Drain,
    Event,
    Finished,
    GpuIdle,
    Hold,
    NodeEvent,
    NodeJoined,
    NodeState,
    Requeue,
    Submit,
    Tick,
    Update,
)
from aifactory.core.factory import Factory, FactorySettings
from aifactory.core.job import Job, JobSpec, Placement
from aifactory.core.project import PREEMPTIBLE, PRIORITY_CLASSES, Account, Department, Project
from aifactory.core.states import JobState

__all__ = [
    "PREEMPTIBLE",
    "PRIORITY_CLASSES",
    "Account",
    "Action",
    "AifactoryError",
    "Cancel",
    "Checkpoint",
    "Cluster",
    "Department",
    "Drain",
    "Event",
    "Factory",
    "FactorySettings",
    "Finished",
    "GpuIdle",
    "Hold",
    "InvalidTransition",
    "Job",
    "JobSpec",
    "JobState",
    "Kill",
    "Launch",
    "Node",
    "NodeEvent",
    "NodeJoined",
    "NodeSpec",
    "NodeState",
    "NotFound",
    "Placement",
    "Preempt",
    "Project",
    "Requeue",
    "SpecError",
    "StateChanged",
    "Submit",
    "Tick",
    "UnknownName",
    "Update",
]
