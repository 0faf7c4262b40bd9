"""The records of the job domain: statuses, jobs, events, companies, assets, pages.

Nothing here touches SQL, HTTP or trio; the store persists these objects, the actors
move them through their lifecycle, and the client decodes them from the wire:

    queued -> running -> done | failed | cancelled
    running -> queued   (a failed attempt with attempts left: content_job.retrying)
    failed | cancelled -> queued   (a manual retry)

The handler API (the registry, `JobContext`) is in `callboard.handlers`.
"""

from __future__ import annotations

import enum
import json
import math
import re
import unicodedata
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Generic, TypedDict, TypeVar

from .errors import InvalidRequest
from .sizes import human_bytes


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
#: The `error_type` of the failures callboard itself decides; an exception's type is
#: its bare name for a built-in ("KeyError") and module-qualified otherwise
#: ("mymodule.MyError"), so these bare names never meet one of a handler's.
#: The reaper ended the attempt: its worker was lost.
WORKER_LOST_TYPE = "WorkerLost"
#: The attempt ran past its timeout.
TIMEOUT_TYPE = "Timeout"
#: The handler returned a value that is no JSON or is too big (`encode_result`).
INVALID_RESULT_TYPE = "InvalidResult"
#: A failed attempt keeps at most this much of its traceback (UTF-8), the tail: the
#: frames nearest the raise and the exception line are what explain it.
MAX_TRACEBACK_BYTES = 16 * 1024


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime | None) -> str | None:
    """RFC 3339 in UTC with a trailing Z and microseconds, so strings sort as times do.
    isoformat, not strftime: it pads the year to four digits (strftime gives "26-..."
    for the year 26) and costs about half as much on every write."""
    if ts is None:
        return None
    return ts.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


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
    #: At most this many of its jobs run at once on all nodes together; None: no cap.
    max_running: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "createdAt": iso(self.created_at),
            "maxRunning": self.max_running,
        }


@dataclass(frozen=True, slots=True)
class JobTypeInfo:
    """A job type a node runs (README, "Job types"): its defaults per job (a submit may
    override `timeout_seconds` and `max_attempts`), how many run at once on one node
    (None: no cap but the workers), and whether callboard provides it."""

    job_type: str
    timeout_seconds: float | None
    max_attempts: int
    concurrency: int | None
    builtin: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobType": self.job_type,
            "timeoutSeconds": self.timeout_seconds,
            "maxAttempts": self.max_attempts,
            "concurrency": self.concurrency,
            "builtIn": self.builtin,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobTypeInfo:
        return cls(
            job_type=data["jobType"],
            timeout_seconds=data["timeoutSeconds"],
            max_attempts=data["maxAttempts"],
            concurrency=data["concurrency"],
            builtin=bool(data["builtIn"]),
        )


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
    #: What the handler returned (a JSON value), set only by the `done` transition.
    result: Any = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    cancel_requested: bool = False
    #: The schedule that made the job, and the tick it was made for (None otherwise).
    schedule_id: str | None = None
    scheduled_for: datetime | None = None
    #: What failed the last attempt (README, "When a job fails"): the exception's type
    #: ("KeyError", "mymodule.MyError") or callboard's own ending (TIMEOUT_TYPE,
    #: WORKER_LOST_TYPE, INVALID_RESULT_TYPE), and the traceback's tail (at most
    #: MAX_TRACEBACK_BYTES). None while nothing failed, and for a cancelled job.
    error_type: str | None = None
    error_traceback: str | None = None

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
            "result": self.result,
            "errorMessage": self.error_message,
            "errorType": self.error_type,
            "errorTraceback": self.error_traceback,
            "sourceTaskId": self.source_task_id,
            "idempotencyKey": self.idempotency_key,
            "createdAt": iso(self.created_at),
            "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at),
            "updatedAt": iso(self.updated_at),
            "scheduleId": self.schedule_id,
            "scheduledFor": iso(self.scheduled_for),
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
            # Absent from events stored before results existed.
            result=data.get("result"),
            error_message=data["errorMessage"],
            # Absent from events stored before failure details existed.
            error_type=data.get("errorType"),
            error_traceback=data.get("errorTraceback"),
            source_task_id=data["sourceTaskId"],
            idempotency_key=data["idempotencyKey"],
            created_at=parse_iso(data["createdAt"]),  # type: ignore[arg-type]
            started_at=parse_iso(data["startedAt"]),
            finished_at=parse_iso(data["finishedAt"]),
            updated_at=parse_iso(data["updatedAt"]),  # type: ignore[arg-type]
            schedule_id=data.get("scheduleId"),
            scheduled_for=parse_iso(data.get("scheduledFor")),
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
        """The SSE `data:` payload (docs/architecture.md, "HTTP and SSE")."""
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
    """One page of a list, newest first; pass `next_cursor` to get the next one."""

    items: list[T]
    next_cursor: str | None


#: The shape of a list cursor (`<created_at in microseconds>_<id>`, the key of a page's
#: last row; `store.encoding` makes and reads them). At most 16 digits, so that every
#: cursor of this shape is a valid position.
CURSOR_PATTERN = r"^[0-9]{1,16}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

# --- the bounds of a submission, of names and of references --------------------------
# Stated in the OpenAPI document too (web/validation.py, web/openapi.py): a value outside
# them is refused with a message that names the field, and never stored.

#: Priorities fit a 32-bit integer.
MAX_PRIORITY = 2**31 - 1
#: Attempts per job (automatic retries included).
MAX_ATTEMPTS = 1000
#: A company's cap on its running jobs (`Company.max_running`): from 1 to this.
MAX_COMPANY_RUNNING = 1_000_000
#: A delay or a per-attempt timeout: ten years, in seconds.
MAX_SECONDS = 10 * 365 * 24 * 3600


#: Company names and token labels: 1 to 200 characters, no control character (Unicode
#: category Cc), not blank; kept without surrounding blanks.
MAX_NAME = 200
# Blank is what Python's str.isspace or JSON Schema's (ECMA-262) \s call a space,
# spelled out in the pattern, so that every reader of it agrees with the server.
_BLANK = (
    " \u00a0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + ("\u2028\u2029\u202f\u205f\u3000\ufeff")
)
_CONTROL = "\\u0000-\\u001f\\u007f-\\u009f"
_BLANK_CLASS = "".join(f"\\u{ord(ch):04x}" for ch in _BLANK)
NAME_PATTERN = f"^[^{_CONTROL}]*[^{_CONTROL}{_BLANK_CLASS}][^{_CONTROL}]*$"
#: A caller's own reference (`sourceTaskId`, `idempotencyKey`): 1 to 200 characters,
#: no NUL (PostgreSQL text cannot hold it).
MAX_REFERENCE = 200
REFERENCE_PATTERN = "^[^\\u0000]+$"
# A lone surrogate (JSON can carry one, as "\ud800" escaped) is not text: no database
# stores it, and no regex engine but Python's can even name it, so the patterns above
# leave it out and the checks below refuse it.
_NOT_TEXT = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def is_text(value: str) -> bool:
    """True when `value` is valid Unicode text (no lone surrogate)."""
    return _NOT_TEXT.search(value) is None


def storable_text(text: str | None) -> str | None:
    """A message from a handler (progress, an error), made storable by every store: NUL
    (PostgreSQL text cannot hold it) and lone surrogates become U+FFFD, so the outcome
    is recorded whatever the handler wrote."""
    return None if text is None else _UNSTORABLE.sub("\ufffd", text)


def check_name(field: str, value: object) -> str:
    """A company name or token label, stripped of blanks; InvalidRequest names the
    field. Exactly what NAME_PATTERN and MAX_NAME say, and no lone surrogate."""
    if not isinstance(value, str) or not value.strip(_BLANK):
        raise InvalidRequest(f"{field} is required and must be a non-empty string")
    if len(value) > MAX_NAME or any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise InvalidRequest(
            f"{field} must be at most {MAX_NAME} characters of text, without control characters"
        )
    return value.strip(_BLANK)


def is_reference(value: object) -> bool:
    """A reference as REFERENCE_PATTERN and MAX_REFERENCE say, and no lone surrogate."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_REFERENCE
        and "\0" not in value
        and is_text(value)
    )


def check_reference(field: str, value: object) -> None:
    """None, or a reference (`is_reference`); InvalidRequest names the field."""
    if value is not None and not is_reference(value):
        raise InvalidRequest(
            f"{field} must be a non-empty string of at most {MAX_REFERENCE} characters of "
            "text, without NUL"
        )


#: The submit options: each one's Python name (a `JobSpec` field, a keyword of every
#: `submit`: `RunningBoard`, `Client`, `AsyncClient`) and its name on the wire (a field
#: of the POST body). One name per option in each world: `delay` and `timeout` are
#: seconds in Python, as trio's own timeouts are, and the wire, where a bare number has
#: no unit, spells the unit out (`delaySeconds`, `timeoutSeconds`, as `Job.to_dict`).
SUBMIT_OPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "source_task_id": "sourceTaskId",
        "priority": "priority",
        "delay": "delaySeconds",
        "max_attempts": "maxAttempts",
        "timeout": "timeoutSeconds",
        "idempotency_key": "idempotencyKey",
    }
)


class SubmitOptions(TypedDict, total=False):
    """The submit options as keyword arguments (`Client.submit(..., **options)`); the
    same names as `SUBMIT_OPTIONS`, which a test keeps in step."""

    source_task_id: str | None
    priority: int | None
    delay: float | timedelta | None
    max_attempts: int | None
    timeout: float | None
    idempotency_key: str | None


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

    def to_wire(self) -> dict[str, Any]:
        """The POST body of this job: options left at their default are left out (the
        server fills them in, from the handler's registration where it has one)."""
        body: dict[str, Any] = {"jobType": self.job_type, "input": dict(self.input)}
        for name, wire in SUBMIT_OPTIONS.items():
            value = getattr(self, name)
            if isinstance(value, timedelta):
                value = value.total_seconds()
            if value is not None and not (name == "priority" and value == 0):
                body[wire] = value
        return body


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
    schedule_id: str | None = None
    scheduled_for: datetime | None = None

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
            schedule_id=self.schedule_id,
            scheduled_for=self.scheduled_for,
        )


@dataclass(frozen=True, slots=True)
class Inserted:
    """The result of inserting one NewJob. With a repeated idempotency key the existing
    job comes back with `created=False` and no event."""

    job: Job
    event: JobEvent | None
    created: bool


@dataclass(frozen=True, slots=True)
class Asset:
    """A stored file. `object_key` is its path under the storage root; `sha256` the hex
    digest of its bytes; `original_filename` the name it was given, minus control
    characters. `created_by_job_id` is None for uploads."""

    id: str
    company_id: str
    namespace: str
    object_key: str
    content_type: str
    byte_size: int
    sha256: str
    original_filename: str
    source_task_id: str | None
    created_by_job_id: str | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "companyId": self.company_id,
            "namespace": self.namespace,
            "objectKey": self.object_key,
            "contentType": self.content_type,
            "byteSize": self.byte_size,
            "sha256": self.sha256,
            "originalFilename": self.original_filename,
            "sourceTaskId": self.source_task_id,
            "createdByJobId": self.created_by_job_id,
            "createdAt": iso(self.created_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Asset:
        """Inverse of `to_dict` (the client reads the API's answers with it)."""
        return cls(
            id=data["id"],
            company_id=data["companyId"],
            namespace=data["namespace"],
            object_key=data["objectKey"],
            content_type=data["contentType"],
            byte_size=int(data["byteSize"]),
            sha256=str(data["sha256"]).lower(),
            original_filename=data["originalFilename"],
            source_task_id=data["sourceTaskId"],
            created_by_job_id=data["createdByJobId"],
            created_at=parse_iso(data["createdAt"]),  # type: ignore[arg-type]
        )


def with_progress(job: Job, percent: int, message: str | None) -> Job:
    return replace(job, progress=Progress(percent, message))


def check_max_running(value: object) -> int | None:
    """A company's cap on its running jobs as given (None: no cap), or InvalidRequest."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (1 <= value <= MAX_COMPANY_RUNNING)
    ):
        raise InvalidRequest(
            f"maxRunning must be an integer from 1 to {MAX_COMPANY_RUNNING}, or null for no "
            f"cap; got {repr(value)[:40]}"
        )
    return value


# --- a handler's result ----------------------------------------------------------------


def encode_result(value: object, max_bytes: int) -> str | None:
    """A handler's return value as the compact JSON text the stores keep (None for
    None), or ValueError with a one-line message saying what is wrong: too big (in
    bytes of UTF-8), or not JSON and where. Refused rather than coerced, as json.dumps
    would: a NaN, a non-string key (it comes back a string), bytes, a set, an object.
    Tuples are taken as lists, as JSON has only the one."""
    if value is None:
        return None
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(_not_json(value, exc)) from None
    if not is_text(text):
        raise ValueError(_not_json(value, None))
    size = len(text.encode())
    if size > max_bytes:
        raise ValueError(
            f"the result is {_bytes(size)} of JSON; results are at most {_bytes(max_bytes)}: "
            "CALLBOARD_RESULT_MAX_BYTES"
        )
    # json.dumps turns keys 1, 1.5, True and None into strings: what reads the result
    # back would not get what the handler returned. A value that reads back equal holds
    # none of them (the C parser and == are far cheaper than walking it in Python).
    if json.loads(text) != value:
        problem = _first_problem(value)
        if problem is not None:
            raise ValueError(_message(*problem))
    return text


def _bytes(n: int) -> str:
    words = human_bytes(n)
    return words if words.endswith(("byte", "bytes")) else f"{words} ({n} bytes)"


def _not_json(value: object, exc: BaseException | None) -> str:
    problem = _first_problem(value)
    if problem is not None:
        return _message(*problem)
    if isinstance(exc, RecursionError):
        return "the result is not JSON: it is nested too deeply"
    return f"the result is not JSON: {' '.join(str(exc).split())}"


def _message(reason: str, path: list[object]) -> str:
    where = "".join(f"[{_short_repr(step)}]" for step in path)
    return f"the result is not JSON: {reason} (at result{where})"


def _short_repr(step: object) -> str:
    text = repr(step)
    return text if len(text) <= 40 else text[:37] + "..."


def _first_problem(value: object) -> tuple[str, list[object]] | None:
    """What makes `value` no JSON value, and the keys and indexes leading to it."""
    try:
        return _problem(value, [], set())
    except RecursionError:
        return "it is nested too deeply", []


def _problem(value: object, path: list[object], seen: set[int]) -> tuple[str, list[object]] | None:
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, str):
        return None if is_text(value) else ("a string holds a lone surrogate", path)
    if isinstance(value, float):
        return None if math.isfinite(value) else (f"{value!r} is not a JSON number", path)
    if isinstance(value, list | tuple | dict):
        if id(value) in seen:
            return "it contains itself", path
        seen.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return f"a key must be a string, not {type(key).__name__} {key!r}", path
                found = _problem(key, path, seen) or _problem(item, [*path, key], seen)
                if found is not None:
                    return found
        else:
            for index, item in enumerate(value):
                found = _problem(item, [*path, index], seen)
                if found is not None:
                    return found
        seen.discard(id(value))
        return None
    return f"Object of type {type(value).__name__} is not JSON serializable", path


# --- schedules -------------------------------------------------------------------------


class CatchUp(enum.StrEnum):
    """What a schedule does with the ticks that passed while no node ran: `skip` them
    (the default), or make `once` one job for all of them."""

    SKIP = "skip"
    ONCE = "once"


#: A schedule's fields: each one's Python name (a keyword of `create_schedule` and
#: `update_schedule`) and its name on the wire, as `SUBMIT_OPTIONS` are.
SCHEDULE_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "name": "name",
        "job_type": "jobType",
        "input": "input",
        "cron": "cron",
        "every": "every",
        "timezone": "timezone",
        "priority": "priority",
        "max_attempts": "maxAttempts",
        "timeout": "timeoutSeconds",
        "catch_up": "catchUp",
        "paused": "paused",
    }
)

#: A schedule's interval (`every`) is at least a second and at most ten years.
MIN_EVERY = 1
#: A cron expression is five fields: minute, hour, day of month, month, day of week.
MAX_CRON = 200


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule of one company: it makes an ordinary job of `job_type` with `input`
    at every tick of `cron` (in `timezone`) or `every` seconds.

    `next_run_at` is the next tick (None while paused); `last_run_at` the tick of the
    last job it made, `last_job_id` that job. `revision` increases with every change
    (an edit, a tick): a write made from an older read changes nothing. It is not on
    the wire."""

    id: str
    company_id: str
    name: str
    job_type: str
    input: Mapping[str, Any]
    cron: str | None
    every: float | None
    timezone: str
    priority: int
    max_attempts: int | None
    timeout_seconds: float | None
    catch_up: CatchUp
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_job_id: str | None
    paused: bool
    created_at: datetime
    updated_at: datetime
    revision: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "companyId": self.company_id,
            "name": self.name,
            "jobType": self.job_type,
            "input": dict(self.input),
            "cron": self.cron,
            "every": self.every,
            "timezone": self.timezone,
            "priority": self.priority,
            "maxAttempts": self.max_attempts,
            "timeoutSeconds": self.timeout_seconds,
            "catchUp": str(self.catch_up),
            "nextRunAt": iso(self.next_run_at),
            "lastRunAt": iso(self.last_run_at),
            "lastJobId": self.last_job_id,
            "paused": self.paused,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        """Inverse of `to_dict` (the client reads the API's answers with it)."""
        return cls(
            id=data["id"],
            company_id=data["companyId"],
            name=data["name"],
            job_type=data["jobType"],
            input=data["input"],
            cron=data.get("cron"),
            every=data.get("every"),
            timezone=data.get("timezone") or "UTC",
            priority=data.get("priority", 0),
            max_attempts=data.get("maxAttempts"),
            timeout_seconds=data.get("timeoutSeconds"),
            catch_up=CatchUp(data.get("catchUp", "skip")),
            next_run_at=parse_iso(data.get("nextRunAt")),
            last_run_at=parse_iso(data.get("lastRunAt")),
            last_job_id=data.get("lastJobId"),
            paused=bool(data.get("paused")),
            created_at=parse_iso(data["createdAt"]),  # type: ignore[arg-type]
            updated_at=parse_iso(data.get("updatedAt") or data["createdAt"]),  # type: ignore[arg-type]
        )


# --- job filters -------------------------------------------------------------------------
# Which jobs a list, a count or a bulk action is about, and the text forms of its times
# (`--since 1h`, `--before 2026-12-01T00:00:00Z`, `CALLBOARD_JOB_RETENTION=7d`). A filter
# of several statuses means any of them; its times bound `created_at` (`created_after`
# inclusive, `created_before` exclusive), so "older than 2 days" is `created_before =
# now - 2d`. The stores, the runtime, the HTTP routes and the CLI read a filter alike.

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NEVER = {"0", "never", "off"}


def parse_duration(raw: str) -> float:
    """Seconds from "30s", "15m", "1h", "2d" (or a bare number of seconds); ValueError
    with a one-line message otherwise."""
    text = raw.strip().lower()
    match = _AGE.match(text)
    if match:
        value = float(match[1]) * _AGE_UNITS[match[2]]
    else:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
    if not 0 < value < float("inf"):
        raise ValueError(f"expected a duration such as 30s, 15m, 1h or 2d, got {raw!r}")
    return value


def parse_retention(raw: str) -> float | None:
    """A retention: a duration, or 0 / "never" / "off" for keeping for ever (None)."""
    if raw.strip().lower() in _NEVER:
        return None
    try:
        return parse_duration(raw)
    except ValueError:
        raise ValueError(f"expected a duration such as 7d or 36h, or never, got {raw!r}") from None


def parse_timestamp(raw: str) -> datetime:
    """An ISO 8601 time; one without a zone is UTC."""
    try:
        when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expected an ISO 8601 time such as 2026-12-01T09:30:00Z, got {raw!r}"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_moment(raw: str, now: datetime) -> datetime:
    """A duration ago ("1h": an hour before `now`) or an ISO 8601 time."""
    try:
        return now - timedelta(seconds=parse_duration(raw))
    except ValueError:
        pass
    try:
        return parse_timestamp(raw)
    except ValueError:
        raise ValueError(
            f"expected a duration such as 30s, 15m, 1h or 2d, or an ISO 8601 time, got {raw!r}"
        ) from None


def parse_statuses(values: Iterable[str]) -> frozenset[JobStatus] | None:
    """Statuses from repeated and/or comma-separated values ("queued,running");
    None when there are none (every status). ValueError names the unknown one."""
    found: set[JobStatus] = set()
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if not name:
                raise ValueError(f"empty status in {value!r}")
            try:
                found.add(JobStatus(name))
            except ValueError:
                known = ", ".join(s.value for s in JobStatus)
                raise ValueError(f"status must be one of {known}, got {part.strip()!r}") from None
    return frozenset(found) or None


def as_statuses(
    status: JobStatus | str | Collection[JobStatus | str] | None,
) -> frozenset[JobStatus] | None:
    """One status, several, or None (every status) as a set; an empty collection is
    no status at all (a filter nothing matches)."""
    if status is None:
        return None
    if isinstance(status, str):
        return frozenset({JobStatus(status)})
    return frozenset(JobStatus(s) for s in status)


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Jobs of one company (None: every company) in any of `statuses` (None: every
    status), of one type and source task when given, created in
    [created_after, created_before)."""

    company_id: str | None = None
    statuses: frozenset[JobStatus] | None = None
    job_type: str | None = None
    source_task_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def matches(self, job: Job) -> bool:
        return (
            (self.company_id is None or job.company_id == self.company_id)
            and (self.statuses is None or job.status in self.statuses)
            and (self.job_type is None or job.job_type == self.job_type)
            and (self.source_task_id is None or job.source_task_id == self.source_task_id)
            and (self.created_after is None or job.created_at >= self.created_after)
            and (self.created_before is None or job.created_at < self.created_before)
        )
