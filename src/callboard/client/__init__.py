"""A Python client for the callboard HTTP API: `Client` (sync) and `AsyncClient`.

The one place that builds callboard URLs: the command line and the dashboard use it.

    with Client("http://127.0.0.1:8000", token) as client:
        submitted = client.submit("acme", "demo.sleep", {"seconds": 2})
        job = client.wait(submitted.job_id, timeout=60)

    async with AsyncClient(url, token) as client:      # under trio or asyncio (anyio)
        async with client.events(company="acme") as events:
            async for event in events: ...

Decisions:
- Every method that takes a company accepts its name or its id; `None` means the
  only company the token sees (a company token's own), and is an error when it sees
  several. Job ids are bare (`GET /api/content-jobs/{id}` finds the company).
- Errors from the server become typed exceptions carrying `status`, `code` and
  `message` (`NotFound`, `Conflict`, `Unauthorized`, `TooLarge`, `InvalidRequest`,
  ...); no answer at all is `ConnectionFailed` (status 0).
- `events()` follows a Server-Sent Events stream and reconnects by itself with
  `Last-Event-ID`, so it yields every job event once, in id order, across dropped
  connections and server restarts; it gives up with `ConnectionFailed` when it cannot
  reconnect for `reconnect_for` seconds (or at once if the first connection fails).
  A stream started without `last_event_id` that drops before its first job event
  resumes from "now", like a browser's EventSource.
- `AsyncClient.events(on_state=...)` reports the connection (`StreamState`:
  connected, or reconnecting in N seconds and why) for displays such as the dashboard.
  `Job`, `JobEvent`, `JobStatus` and `NodeEvent` are re-exported so that code using
  the client (the dashboard) needs nothing else from callboard.
- `download()` streams into a temporary file beside the target, checks size and
  sha256 against the asset's metadata and ETag, and renames it into place only if
  they match; on a mismatch it raises `ChecksumMismatch` and leaves no file. It
  follows no redirect unless `redirect=True`, which takes the bytes from the object
  store's presigned URL (S3 storage), with no token sent there.
- Both clients share one implementation of every request/response call: the
  operations in `_core.py` are generators that yield the HTTP calls they need (sans I/O) and
  each client drives them with its own transport. Only streaming (events, download)
  is written twice.
"""

from __future__ import annotations

from ..jobs import Job, JobEvent, JobStatus, JobTypeInfo, NodeEvent, Schedule
from ._async import AsyncClient, AsyncEventStream, AsyncPages
from ._core import DEFAULT_URL, read_token_file
from ._sync import Client, EventIterator
from .errors import (
    ChecksumMismatch,
    ClientError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidRequest,
    NotFound,
    TooLarge,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from .models import Asset, Downloaded, Event, StreamGap, StreamState, Submitted, event_to_dict

__all__ = [
    "DEFAULT_URL",
    "Asset",
    "AsyncClient",
    "AsyncEventStream",
    "AsyncPages",
    "ChecksumMismatch",
    "Client",
    "ClientError",
    "Conflict",
    "ConnectionFailed",
    "Downloaded",
    "Event",
    "EventIterator",
    "Forbidden",
    "InvalidRequest",
    "Job",
    "JobEvent",
    "JobStatus",
    "JobTypeInfo",
    "NodeEvent",
    "NotFound",
    "Schedule",
    "StreamGap",
    "StreamState",
    "Submitted",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "event_to_dict",
    "read_token_file",
]
