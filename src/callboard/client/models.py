"""What the API answers, as typed objects. Jobs and job events are the domain's own
`Job` and `JobEvent` (`callboard.jobs`), rebuilt from their wire form."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from httpx_sse import ServerSentEvent

from ..jobs import Asset, EventType, Job, JobEvent, JobStatus, NodeEvent, iso, parse_iso
from .errors import ClientError, error_for_code


@dataclass(frozen=True, slots=True)
class Submitted:
    """The answer to a submit: the job is stored and queued."""

    job_id: str
    status: JobStatus
    created_at: datetime

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Submitted:
        return cls(data["jobId"], JobStatus(data["status"]), parse_iso(data["createdAt"]))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {"jobId": self.job_id, "status": str(self.status), "createdAt": iso(self.created_at)}


@dataclass(frozen=True, slots=True)
class Downloaded:
    path: Path
    asset: Asset


@dataclass(frozen=True, slots=True)
class StreamGap:
    """The server pruned events after the `Last-Event-ID` asked for (older than its
    retention window): reload current state instead of trusting the replay."""

    last_event_id: int
    pruned_through: int
    message: str
    type: str = "stream.gap"


@dataclass(frozen=True, slots=True)
class StreamState:
    """Where an event stream's connection stands, as told to `events(on_state=...)`:
    `"connected"` once the server answered with a stream, `"reconnecting"` when it
    dropped (or the server ended it) and the client will try again in `retry_in`
    seconds, resuming after `last_event_id`. `reason` says why it dropped."""

    state: str
    retry_in: float | None = None
    reason: str | None = None
    last_event_id: int | None = None


Event = JobEvent | NodeEvent | StreamGap
"""What `events()` yields: a job event (with its id and the whole job), an operator
feed event without id (`worker.*`, `runtime.stats`), or a gap notice."""


def event_to_dict(event: Event) -> dict[str, Any]:
    """`{"id", "type", "data"}` with `data` as the server sent it (one JSON line each in
    `callboard events --json`)."""
    if isinstance(event, JobEvent):
        return {"id": event.id, "type": str(event.type), "data": event.to_dict()}
    if isinstance(event, StreamGap):
        data = {
            "lastEventId": event.last_event_id,
            "prunedThrough": event.pruned_through,
            "message": event.message,
        }
        return {"id": None, "type": event.type, "data": data}
    return {"id": None, "type": event.type, "data": dict(event.data)}


def typed_event(sse: ServerSentEvent) -> Event:
    kind = sse.event
    try:
        data = json.loads(sse.data) if sse.data else {}
    except ValueError:
        raise ClientError(0, "bad_event", f"event {kind!r} carries data that is not JSON") from None
    if kind == "error":
        error = data.get("error", {}) if isinstance(data, dict) else {}
        code, message = str(error.get("code", "error")), str(error.get("message", data))
        raise error_for_code(code, message)
    if kind == "stream.gap":
        return StreamGap(
            int(data["lastEventId"]), int(data["prunedThrough"]), str(data.get("message", ""))
        )
    if kind in _JOB_EVENT_TYPES and sse.id:  # job events carry ids; nothing else does
        return JobEvent(
            id=int(sse.id),
            type=EventType(kind),
            job_id=data["jobId"],
            company_id=data["companyId"],
            created_at=parse_iso(data["createdAt"]),  # type: ignore[arg-type]
            job=Job.from_dict(data["job"]),
        )
    return NodeEvent(kind, data)


_JOB_EVENT_TYPES = frozenset(str(t) for t in EventType)
