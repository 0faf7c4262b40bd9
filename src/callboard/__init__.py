"""callboard: a job runtime for trio.

The public API is small on purpose (pinned by tests/unit/test_public_api.py):

    board = callboard.Board(database_url="sqlite:///cb.db", workers=8)

    @board.handler("diagram", timeout=120, max_attempts=3, concurrency=4)
    async def render(ctx: callboard.JobContext) -> None: ...

    async with board.running() as rt:
        company = await rt.get_or_create_company("acme")
        job = await rt.submit(company.id, "diagram", {"x": 1})
        job = await rt.wait(job.id)

Names resolve lazily (module `__getattr__`): `import callboard.client`, and so the
dashboard and every client command, loads neither the actor tree nor the store; the
first use of `callboard.Board` does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .board import Board
    from .errors import (
        AssetNotFound,
        AssetTooLarge,
        CallboardError,
        CompanyExists,
        CompanyNotFound,
        Conflict,
        InvalidRequest,
        InvalidTransition,
        JobNotFound,
        Lagged,
        NotFound,
        ReservedJobType,
        ShuttingDown,
        StoreInUse,
        StoreUnavailable,
        UnknownJobType,
    )
    from .handlers import JobContext
    from .jobs import TERMINAL, Asset, Company, Job, JobEvent, JobSpec, JobStatus, Page, Progress
    from .running_board import RunningBoard
    from .runtime import SupervisorEscalation

# public name -> the module that defines it
_WHERE: dict[str, str] = {
    "Asset": "jobs",
    "AssetNotFound": "errors",
    "AssetTooLarge": "errors",
    "Board": "board",
    "CallboardError": "errors",
    "Company": "jobs",
    "CompanyExists": "errors",
    "CompanyNotFound": "errors",
    "Conflict": "errors",
    "InvalidRequest": "errors",
    "InvalidTransition": "errors",
    "Job": "jobs",
    "JobContext": "handlers",
    "JobEvent": "jobs",
    "JobNotFound": "errors",
    "JobSpec": "jobs",
    "JobStatus": "jobs",
    "Lagged": "errors",
    "NotFound": "errors",
    "Page": "jobs",
    "Progress": "jobs",
    "ReservedJobType": "errors",
    "RunningBoard": "running_board",
    "ShuttingDown": "errors",
    "StoreInUse": "errors",
    "StoreUnavailable": "errors",
    "SupervisorEscalation": "runtime",
    "TERMINAL": "jobs",
    "UnknownJobType": "errors",
}

__all__ = [
    "TERMINAL",
    "Asset",
    "AssetNotFound",
    "AssetTooLarge",
    "Board",
    "CallboardError",
    "Company",
    "CompanyExists",
    "CompanyNotFound",
    "Conflict",
    "InvalidRequest",
    "InvalidTransition",
    "Job",
    "JobContext",
    "JobEvent",
    "JobNotFound",
    "JobSpec",
    "JobStatus",
    "Lagged",
    "NotFound",
    "Page",
    "Progress",
    "ReservedJobType",
    "RunningBoard",
    "ShuttingDown",
    "StoreInUse",
    "StoreUnavailable",
    "SupervisorEscalation",
    "UnknownJobType",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'callboard' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # resolved once; later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
