"""The job domain: statuses, jobs, events, the handler registry and JobContext.

Nothing here touches SQL, HTTP or trio's scheduling; the store persists these
objects and the actors move them through their lifecycle:

    queued -> running -> done | failed | cancelled
    running -> queued   (a failed attempt with attempts left: content_job.retrying)
    failed | cancelled -> queued   (a manual retry)
"""

from __future__ import annotations

import enum
import inspect
import math
import re
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .errors import InvalidRequest, UnknownJobType

if TYPE_CHECKING:
    from .assets import Asset


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL: frozenset[JobStatus] = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED})
RETRYABLE: frozenset[JobStatus] = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


class EventType(enum.StrEnum):
    QUEUED = "content_job.queued"
    RUNNING = "content_job.running"
    PROGRESS = "content_job.progress"
    RETRYING = "content_job.retrying"
    DONE = "content_job.done"
    FAILED = "content_job.failed"
    CANCELLED = "content_job.cancelled"


TERMINAL_EVENTS: frozenset[EventType] = frozenset(
    {EventType.DONE, EventType.FAILED, EventType.CANCELLED}
)

WORKER_LOST = "worker lost"


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime | None) -> str | None:
    """RFC 3339 in UTC with a trailing Z and microseconds, so strings sort as times do."""
    if ts is None:
        return None
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Progress:
    percent: int = 0
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"percent": self.percent, "message": self.message}


@dataclass(frozen=True, slots=True)
class Company:
    id: str
    name: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "createdAt": iso(self.created_at)}


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored. Attributes are snake_case; `to_dict()` gives the camelCase wire form."""

    id: str
    company_id: str
    job_type: str
    status: JobStatus
    priority: int
    input: Mapping[str, Any]
    progress: Progress
    attempt: int
    max_attempts: int
    timeout_seconds: float | None
    run_at: datetime
    result_asset_id: str | None
    error_message: str | None
    source_task_id: str | None
    idempotency_key: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    cancel_requested: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "companyId": self.company_id,
            "jobType": self.job_type,
            "status": str(self.status),
            "priority": self.priority,
            "input": dict(self.input),
            "progress": self.progress.to_dict(),
            "attempt": self.attempt,
            "maxAttempts": self.max_attempts,
            "timeoutSeconds": self.timeout_seconds,
            "runAt": iso(self.run_at),
            "resultAssetId": self.result_asset_id,
            "errorMessage": self.error_message,
            "sourceTaskId": self.source_task_id,
            "idempotencyKey": self.idempotency_key,
            "createdAt": iso(self.created_at),
            "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at),
            "updatedAt": iso(self.updated_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        """Inverse of `to_dict` (lease fields are not on the wire and come back empty)."""
        progress = data.get("progress") or {}
        return cls(
            id=data["id"],
            company_id=data["companyId"],
            job_type=data["jobType"],
            status=JobStatus(data["status"]),
            priority=data["priority"],
            input=data["input"],
            progress=Progress(progress.get("percent", 0), progress.get("message")),
            attempt=data["attempt"],
            max_attempts=data["maxAttempts"],
            timeout_seconds=data["timeoutSeconds"],
            run_at=parse_iso(data["runAt"]),  # type: ignore[arg-type]
            result_asset_id=data["resultAssetId"],
            error_message=data["errorMessage"],
            source_task_id=data["sourceTaskId"],
            idempotency_key=data["idempotencyKey"],
            created_at=parse_iso(data["createdAt"]),  # type: ignore[arg-type]
            started_at=parse_iso(data["startedAt"]),
            finished_at=parse_iso(data["finishedAt"]),
            updated_at=parse_iso(data["updatedAt"]),  # type: ignore[arg-type]
        )


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One row of content_job_events: what happened, and the whole job as it stood after it.

    `id` increases monotonically in commit order on one store; it is the SSE `id:`.
    """

    id: int
    type: EventType
    job_id: str
    company_id: str
    created_at: datetime
    job: Job

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS

    def to_dict(self) -> dict[str, Any]:
        """The SSE `data:` payload (DESIGN.md section 4)."""
        return {
            "jobId": self.job_id,
            "companyId": self.company_id,
            "status": str(self.job.status),
            "progress": self.job.progress.to_dict(),
            "createdAt": iso(self.created_at),
            "job": self.job.to_dict(),
        }


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """An operator-feed event about the node itself (`worker.busy`, `worker.idle`,
    `runtime.stats`): not stored, no id, never replayed."""

    type: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to submit (used by `submit_many`); the same fields as `submit`."""

    job_type: str
    input: Mapping[str, Any] = field(default_factory=dict)
    source_task_id: str | None = None
    priority: int = 0
    delay: float | timedelta | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job ready to insert: every default resolved, every time absolute."""

    id: str
    company_id: str
    job_type: str
    input: Mapping[str, Any]
    priority: int
    max_attempts: int
    timeout_seconds: float | None
    run_at: datetime
    source_task_id: str | None
    idempotency_key: str | None

    def queued(self, now: datetime) -> Job:
        """The job as inserting it at `now` makes it: queued, attempt 0, progress 0."""
        return Job(
            id=self.id,
            company_id=self.company_id,
            job_type=self.job_type,
            status=JobStatus.QUEUED,
            priority=self.priority,
            input=self.input,
            progress=Progress(0, None),
            attempt=0,
            max_attempts=self.max_attempts,
            timeout_seconds=self.timeout_seconds,
            run_at=self.run_at,
            result_asset_id=None,
            error_message=None,
            source_task_id=self.source_task_id,
            idempotency_key=self.idempotency_key,
            created_at=now,
            started_at=None,
            finished_at=None,
            updated_at=now,
        )


@dataclass(frozen=True, slots=True)
class Inserted:
    """The result of inserting one NewJob. With a repeated idempotency key the existing
    job comes back with `created=False` and no event."""

    job: Job
    event: JobEvent | None
    created: bool


# --- handlers -------------------------------------------------------------------------

Handler = Callable[["JobContext"], Awaitable[None]]

_JOB_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    job_type: str
    fn: Handler
    timeout: float | None = None
    max_attempts: int = 1
    concurrency: int | None = None


class HandlerRegistry:
    """Job types and the handlers that run them."""

    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}

    def register(
        self,
        job_type: str,
        fn: Handler,
        *,
        timeout: float | None = None,
        max_attempts: int = 1,
        concurrency: int | None = None,
    ) -> HandlerSpec:
        if not _JOB_TYPE.match(job_type):
            raise ValueError(
                f"invalid job type {job_type!r}: use 1-128 letters, digits and _ . : -"
            )
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"handler for {job_type!r} must be an async function")
        if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout for {job_type!r} must be a positive number of seconds")
        if max_attempts < 1:
            raise ValueError(f"max_attempts for {job_type!r} must be at least 1")
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency for {job_type!r} must be at least 1")
        if job_type in self._specs:
            raise ValueError(f"a handler for {job_type!r} is already registered")
        spec = HandlerSpec(job_type, fn, timeout, max_attempts, concurrency)
        self._specs[job_type] = spec
        return spec

    def get(self, job_type: str) -> HandlerSpec:
        try:
            return self._specs[job_type]
        except KeyError:
            raise UnknownJobType(job_type, self._specs) from None

    def __contains__(self, job_type: object) -> bool:
        return job_type in self._specs

    def job_types(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[HandlerSpec]:
        return [self._specs[t] for t in sorted(self._specs)]

    def merged(self, other: HandlerRegistry) -> HandlerRegistry:
        out = HandlerRegistry()
        out._specs = {**self._specs, **other._specs}
        return out


MAX_PRIORITY = 2**31 - 1


def build_new_job(
    registry: HandlerRegistry,
    company_id: str,
    spec: JobSpec,
    now: datetime,
) -> NewJob:
    """Validate one submission against the registry and resolve its defaults.

    Raises UnknownJobType or InvalidRequest with a message that names the field.
    """
    handler = registry.get(spec.job_type)
    if not isinstance(spec.input, Mapping):
        raise InvalidRequest(f"input must be a JSON object, not {type(spec.input).__name__}")
    if not isinstance(spec.priority, int) or isinstance(spec.priority, bool):
        raise InvalidRequest("priority must be an integer")
    if abs(spec.priority) > MAX_PRIORITY:
        raise InvalidRequest(f"priority must be between {-MAX_PRIORITY} and {MAX_PRIORITY}")
    delay = spec.delay
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if delay is not None:
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not math.isfinite(delay)
        ):
            raise InvalidRequest("delay must be a number of seconds")
        if delay < 0:
            raise InvalidRequest("delay must not be negative")
    max_attempts = spec.max_attempts if spec.max_attempts is not None else handler.max_attempts
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise InvalidRequest("maxAttempts must be an integer of at least 1")
    timeout = spec.timeout if spec.timeout is not None else handler.timeout
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not (timeout > 0 and math.isfinite(timeout))
    ):
        raise InvalidRequest("timeout must be a positive number of seconds")
    for name, value in (
        ("sourceTaskId", spec.source_task_id),
        ("idempotencyKey", spec.idempotency_key),
    ):
        if value is not None and (not isinstance(value, str) or not value or len(value) > 200):
            raise InvalidRequest(f"{name} must be a non-empty string of at most 200 characters")
    return NewJob(
        id=new_id(),
        company_id=company_id,
        job_type=spec.job_type,
        input=dict(spec.input),
        priority=spec.priority,
        max_attempts=max_attempts,
        timeout_seconds=float(timeout) if timeout is not None else None,
        run_at=now + timedelta(seconds=delay or 0),
        source_task_id=spec.source_task_id,
        idempotency_key=spec.idempotency_key,
    )


# --- the handler's view of its job ----------------------------------------------------


class ProgressSink(Protocol):
    """Where JobContext sends progress; the worker implements it (coalescing, leases)."""

    async def report(self, percent: int, message: str | None) -> None: ...


AssetData = bytes | bytearray | memoryview | Iterable[bytes] | AsyncIterable[bytes]


class AssetWriter(Protocol):
    """What `ctx.open_asset()` yields: write chunks; `asset` is set once the block ends."""

    asset: Asset | None

    async def write(self, data: bytes | bytearray | memoryview) -> None: ...


class AssetSink(Protocol):
    """Where JobContext stores and reads assets; the worker implements it (JobAssets)."""

    async def save(
        self, filename: str, content_type: str, data: AssetData, *, result: bool
    ) -> Asset: ...

    def open(
        self, filename: str, content_type: str, *, result: bool
    ) -> AbstractAsyncContextManager[AssetWriter]: ...

    async def read(self, asset_id: str) -> bytes: ...


@dataclass(slots=True)
class JobContext:
    """What a handler gets: its job's identity and input, and ways to report back.

    `progress()` is cheap to call often: the worker stores at most a few progress
    events a second per job and always keeps the latest value.

    Assets a handler saves go to the `generated` namespace, linked to the job and its
    source task. Their rows are written with the job's `done` transition, in the same
    transaction; if the attempt fails, is cancelled or loses its lease, its files are
    deleted and no row is written. The last asset saved with `result=True` (the
    default) becomes the job's `resultAssetId`.
    """

    job: Job
    _sink: ProgressSink
    _assets: AssetSink | None = None

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def company_id(self) -> str:
        return self.job.company_id

    @property
    def job_type(self) -> str:
        return self.job.job_type

    @property
    def input(self) -> Mapping[str, Any]:
        return self.job.input

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def source_task_id(self) -> str | None:
        return self.job.source_task_id

    async def progress(self, percent: float, message: str | None = None) -> None:
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise TypeError("percent must be a number from 0 to 100")
        if not math.isfinite(percent):
            raise ValueError("percent must be a finite number from 0 to 100")
        clamped = max(0, min(100, round(percent)))
        await self._sink.report(clamped, None if message is None else str(message))

    def _asset_sink(self) -> AssetSink:
        if self._assets is None:
            raise RuntimeError("this JobContext has no asset storage")
        return self._assets

    async def save_asset(
        self, filename: str, content_type: str, data: AssetData, *, result: bool = True
    ) -> Asset:
        """Store `data` (bytes, or a sync or async iterable of bytes chunks, streamed) as
        a generated asset. Over the namespace's cap it raises AssetTooLarge, having kept
        nothing; left unhandled, that fails the job with the cap in its message."""
        return await self._asset_sink().save(filename, content_type, data, result=result)

    def open_asset(
        self, filename: str, content_type: str, *, result: bool = True
    ) -> AbstractAsyncContextManager[AssetWriter]:
        """`async with ctx.open_asset("out.mp4", "video/mp4") as f: await f.write(chunk)`;
        the asset is stored when the block ends normally (`f.asset`), and nothing is
        kept if it raises."""
        return self._asset_sink().open(filename, content_type, result=result)

    async def read_asset(self, asset_id: str) -> bytes:
        """The bytes of an asset of this job's company (an upload named in the input,
        or one this attempt saved). Raises AssetNotFound for any other id."""
        return await self._asset_sink().read(asset_id)


def with_progress(job: Job, percent: int, message: str | None) -> Job:
    return replace(job, progress=Progress(percent, message))
