"""callboard: a job runtime for trio.

The public API is small on purpose (pinned by tests/unit/test_public_api.py):

    board = callboard.Board(database_url="sqlite:///cb.db", workers=8)

    @board.handler("diagram", timeout=120, max_attempts=3, concurrency=4)
    async def render(ctx: callboard.JobContext) -> None: ...

    async with board.running() as rt:
        company = await rt.create_company("acme")
        job = await rt.submit(company.id, "diagram", {"x": 1})
        job = await rt.wait(job.id)
"""

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
    ShuttingDown,
    StoreInUse,
    StoreUnavailable,
    UnknownJobType,
)
from .handlers import JobContext
from .jobs import TERMINAL, Asset, Company, Job, JobEvent, JobSpec, JobStatus, Page, Progress
from .running_board import RunningBoard
from .runtime import SupervisorEscalation

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
    "RunningBoard",
    "ShuttingDown",
    "StoreInUse",
    "StoreUnavailable",
    "SupervisorEscalation",
    "UnknownJobType",
]
