"""The parts both clients share, none of which does I/O: paths, request bodies, the
operations (generators that yield the HTTP calls they need and get the decoded JSON
back), the merge of paginated lists, the state of an event stream across reconnects,
and the checks of a download."""

from __future__ import annotations

import mimetypes
import os
import secrets
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent

from ..jobs import (
    SCHEDULE_FIELDS,
    Job,
    JobEvent,
    JobSpec,
    JobStatus,
    JobTypeInfo,
    Schedule,
    iso,
)
from .errors import (
    ChecksumMismatch,
    ClientError,
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    NotFound,
    Unavailable,
    WaitTimeout,
    raise_for,
    transport_error,
)
from .models import Asset, Event, Submitted, typed_event

DEFAULT_URL = "http://127.0.0.1:8000"

T = TypeVar("T")


def read_token_file(path: Path) -> str | None:
    try:
        token = path.read_text().strip()
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        return None
    return token or None


def api_path(*parts: str) -> str:
    """`/api/...` with every part quoted: ids never reshape the path."""
    return "/api/" + "/".join(quote(str(part), safe="") for part in parts)


class Call(NamedTuple):
    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    files: Mapping[str, Any] | None = None
    #: Seconds for this call, or None to wait as long as it takes (gc walks the whole
    #: storage); the client's default when left out.
    timeout: float | object | None = ...


Op = Generator[Call, Any, T]
"""A sans-I/O operation: yields the calls it needs, gets each one's decoded JSON back
(or the typed error thrown in), returns its result."""


def spec_body(spec: JobSpec | Mapping[str, Any]) -> dict[str, Any]:
    """The wire form of one job of a batch: a JobSpec, or already a wire dict."""
    if isinstance(spec, JobSpec):
        return spec.to_wire()
    return dict(spec)  # already the wire form: {"jobType": ..., "input": ...}


class Merge(Generic[T]):
    """Newest-first merge of several companies' lists, each paginated newest first.
    Sans I/O: the caller fetches a page for every key in `wanted()` before `pop()`."""

    def __init__(self, keys: Iterable[str], created: Callable[[T], Any]) -> None:
        self._buffers: dict[str, deque[T]] = {key: deque() for key in keys}
        self.cursors: dict[str, str | None] = dict.fromkeys(self._buffers)
        self._exhausted: set[str] = set()
        self._created = created

    def wanted(self) -> list[str]:
        return [k for k, b in self._buffers.items() if not b and k not in self._exhausted]

    def feed(self, key: str, items: list[T], next_cursor: str | None) -> None:
        self._buffers[key].extend(items)
        self.cursors[key] = next_cursor
        if next_cursor is None or not items:
            self._exhausted.add(key)

    def pop(self) -> T | None:
        heads = [b for b in self._buffers.values() if b]
        if not heads:
            return None
        return max(heads, key=lambda b: self._created(b[0])).popleft()


class Follow:
    """Where an event stream is across reconnects: the last job event id (sent back as
    `Last-Event-ID`), the server's `retry:` delay, and the reconnect budget."""

    def __init__(
        self,
        url: str,
        path: str,
        *,
        per_job: bool,
        last_event_id: int | None,
        reconnect_for: float | None,
        own_feed_on_403: bool = False,
        until: int | None = None,
    ) -> None:
        self.url = url
        self.path = path
        self.per_job = per_job
        self.last_id = last_event_id
        self.reconnect_for = reconnect_for
        # The operator feed answered 403 to a company token: follow its own company's
        # feed instead (the client sets `path` from the company it sees).
        self.own_feed_on_403 = own_feed_on_403
        self.needs_own_feed = False
        # A job's history ends at the newest event it had when asked (`until`), not at
        # its first terminal event: a retried job has one per failed or cancelled run.
        self.until = until
        self.retry = 3.0
        self.finished = False
        self._ever_connected = False
        self._failing_since: float | None = None
        self._failures = 0
        self._delivered = False

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = str(self.last_id)
        return headers

    def opened(self, response: httpx.Response) -> bool:
        """Whether to read this response as a stream; raises what cannot be retried."""
        status = response.status_code
        if status == 204:  # a finished job's stream: nothing more will come
            self.finished = True
            return False
        if status == 403 and self.own_feed_on_403:
            self.own_feed_on_403, self.needs_own_feed = False, True
            return False
        if status == 503:
            raise RetryLater(f"HTTP 503 from {self.url}")
        raise_for(response)
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            raise ClientError(
                status, "not_event_stream", f"expected an event stream, got {content_type!r}"
            )
        self._ever_connected = True
        self._failing_since = None
        self._failures = 0
        self._delivered = False
        return True

    def accept(self, sse: ServerSentEvent) -> Event | None:
        if sse.retry is not None:
            self.retry = sse.retry / 1000
        if not sse.data and sse.event in ("", "message"):
            # `retry:` and, on a fresh feed, the server's current head as `id:`: the
            # place to resume from should the stream drop before its first event.
            if self.last_id is None and sse.id and sse.id.isdigit():
                self.last_id = int(sse.id)
            return None
        event = typed_event(sse)
        if isinstance(event, JobEvent):
            # Only job events carry ids (the decoder repeats the last id on others).
            if self.last_id is not None and event.id <= self.last_id:
                return None
            self.last_id = event.id
            if self.until is not None:
                self.finished = event.id >= self.until
            elif self.per_job and event.terminal:
                self.finished = True
        self._delivered = True
        return event

    def ended(self) -> float:
        """The delay before reconnecting after the server ended the stream (it drained,
        or we fell behind): at once if it delivered something, else its `retry:`."""
        return 0.0 if self._delivered else self.retry

    def failed(self, exc: Exception, now: float) -> float:
        """The delay before the next attempt, or raises when it is time to give up."""
        if not self._ever_connected:
            if isinstance(exc, httpx.TransportError):
                raise transport_error(self.url, exc) from exc
            raise Unavailable(503, "unavailable", f"{self.url} is unavailable: {exc}") from exc
        if self._failing_since is None:
            self._failing_since = now
        elif self.reconnect_for is not None and now - self._failing_since > self.reconnect_for:
            raise ConnectionFailed(
                0,
                "connection_lost",
                f"lost the event stream from {self.url} and could not reconnect "
                f"for {self.reconnect_for:g}s: {exc}",
            ) from exc
        self._failures += 1
        return min(0.25 * 2**self._failures, max(self.retry, 5.0))


class RetryLater(Exception):
    """An answer worth retrying on an event stream (503)."""


class Deadline:
    """`wait`'s time limit on the sync client; knows the job's last status for the message."""

    def __init__(self, timeout: float, job: Job) -> None:
        self.at = time.monotonic() + timeout
        self.timeout = timeout
        self.job = job

    def left(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise WaitTimeout(
                0,
                "timeout",
                f"job {self.job.id} is still {self.job.status} after {self.timeout:g}s",
            )
        return left


def asset_created(asset: Asset) -> datetime:
    return asset.created_at


def safe_filename(name: str | None, fallback: str) -> str:
    name = "".join(ch for ch in (name or "") if unicodedata.category(ch) != "Cc")
    # No directories, and no leading dot: the uploader picks this name, and it must not
    # become a hidden file such as .bashrc.
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".")
    return fallback if not name else name[:200]


def download_target(path: str | os.PathLike[str] | None, asset: Asset) -> Path:
    """Where a download goes. A name taken from the asset (no path, or a directory)
    never replaces an existing file; an explicit file path does, as `cp` would."""
    name = safe_filename(asset.original_filename, asset.id)
    if path is not None and not Path(path).is_dir():
        target = Path(path)
        if str(path).endswith(("/", os.sep)) or not target.parent.is_dir():
            raise InvalidRequest(0, "no_directory", f"no such directory: {target.parent}")
        return target
    target = Path(path or ".") / name
    if target.exists():
        raise Conflict(
            0,
            "exists",
            f"{target} already exists; pass -o PATH to choose where to write "
            "(a file path given with -o is replaced)",
        )
    return target


def open_temp(target: Path) -> tuple[int, Path]:
    """A new file beside `target` for a download in progress (the umask applies, as it
    would to the final file)."""
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
    return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temp


def check_etag(asset: Asset, response: httpx.Response) -> None:
    """Before reading the body: the content's ETag is its sha256 and must be the one the
    metadata records."""
    etag = response.headers.get("etag")
    if etag is None:
        return
    etag = etag.removeprefix("W/").strip('"').lower()
    if etag != asset.sha256:
        raise ChecksumMismatch(
            0,
            "checksum_mismatch",
            f"asset {asset.id}: the server's ETag {etag} differs from its recorded sha256 "
            f"{asset.sha256}; nothing was written",
        )


def content_params(redirect: bool) -> dict[str, str] | None:
    return {"redirect": "true"} if redirect else None


def origin(url: str) -> str:
    """`scheme://host:port` of a URL: all a message may show of a presigned URL (the
    rest of it is a credential)."""
    parts = httpx.URL(url)
    return f"{parts.scheme}://{parts.netloc.decode('ascii', 'replace')}"


def store_refused(asset: Asset, response: httpx.Response) -> ClientError:
    """The object store refused the URL the server handed out (it expired, or the
    object is gone); its answer is XML of its own, not a callboard error."""
    return ClientError(
        response.status_code,
        "object_store",
        f"asset {asset.id}: the object store at {origin(str(response.url))} answered "
        f"HTTP {response.status_code} to the download URL; nothing was written",
    )


def verify_download(asset: Asset, digest: str, size: int) -> None:
    if size != asset.byte_size or digest != asset.sha256:
        raise ChecksumMismatch(
            0,
            "checksum_mismatch",
            f"asset {asset.id}: downloaded {size} bytes with sha256 {digest}, expected "
            f"{asset.byte_size} bytes with sha256 {asset.sha256}; nothing was written",
        )


def tls_verify(url: str) -> bool:
    # A plain-http base URL needs no TLS context; building the default one loads the CA
    # bundle (~0.2 s, on every command-line call). https keeps full verification.
    return url.startswith("https:")


# --- the operations both clients share -----------------------------------------------------


class ApiBase:
    def __init__(self, url: str, token: str | None, timeout: float, idle_timeout: float) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        # An event stream with nothing, not even a ping, for this long is dead: reconnect.
        self.idle_timeout = idle_timeout
        self._company_ids: dict[str, str] = {}  # name or id -> id
        self._company_names: dict[str, str] = {}  # id -> name

    def _http_options(self) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {
            "base_url": self.url,
            "headers": headers,
            "timeout": self.timeout,
            "verify": tls_verify(self.url),
        }

    def _stream_timeout(self, read: float | None = None) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, read=self.idle_timeout if read is None else read)

    def company_name(self, company_id: str) -> str | None:
        """A company's name if this client has listed companies already (display only)."""
        return self._company_names.get(company_id)

    # job types

    def _job_types_op(self) -> Op[list[JobTypeInfo]]:
        items = (yield Call("GET", "/api/job-types"))["items"]
        return [JobTypeInfo.from_dict(item) for item in items]

    # companies and tokens

    def _companies_op(self) -> Op[list[dict[str, Any]]]:
        items = (yield Call("GET", "/api/companies"))["items"]
        for company in items:
            self._company_ids[company["id"]] = self._company_ids[company["name"]] = company["id"]
            self._company_names[company["id"]] = company["name"]
        return items

    def _company_id_op(self, company: str | None) -> Op[str]:
        if company is not None and company in self._company_ids:
            return self._company_ids[company]
        companies = yield from self._companies_op()
        if company is None:
            if len(companies) == 1:
                return companies[0]["id"]
            if not companies:
                raise NotFound(404, "not_found", "there is no company yet; create one first")
            names = ", ".join(sorted(c["name"] for c in companies))
            raise InvalidRequest(
                0, "company_required", f"name a company (--company): this token sees {names}"
            )
        if company in self._company_ids:
            return self._company_ids[company]
        raise NotFound(404, "not_found", f"no company named or with id {company!r}")

    def _company_ids_op(self, company: str | None) -> Op[list[str]]:
        """One company's id, or (None) every company the token sees."""
        if company is not None:
            return [(yield from self._company_id_op(company))]
        return [c["id"] for c in (yield from self._companies_op())]

    def _create_company_op(self, name: str) -> Op[dict[str, Any]]:
        return (yield Call("POST", "/api/companies", json={"name": name}))

    def _company_op(self, company: str) -> Op[dict[str, Any]]:
        cid = yield from self._company_id_op(company)
        return (yield Call("GET", api_path("companies", cid)))

    def _set_max_running_op(self, company: str, max_running: int | None) -> Op[dict[str, Any]]:
        cid = yield from self._company_id_op(company)
        body = {"maxRunning": max_running}
        return (yield Call("PATCH", api_path("companies", cid), json=body))

    def _create_token_op(self, company: str, label: str) -> Op[dict[str, Any]]:
        cid = yield from self._company_id_op(company)
        return (yield Call("POST", api_path("companies", cid, "tokens"), json={"label": label}))

    def _tokens_op(self, company: str) -> Op[list[dict[str, Any]]]:
        cid = yield from self._company_id_op(company)
        return (yield Call("GET", api_path("companies", cid, "tokens")))["items"]

    def _revoke_token_op(self, company: str, token_id: str) -> Op[None]:
        cid = yield from self._company_id_op(company)
        yield Call("DELETE", api_path("companies", cid, "tokens", token_id))

    # jobs

    def _submit_op(self, company: str | None, body: dict[str, Any]) -> Op[Submitted]:
        cid = yield from self._company_id_op(company)
        data = yield Call("POST", api_path("companies", cid, "content-jobs"), json=body)
        return Submitted.from_dict(data)

    def _submit_many_op(
        self, company: str | None, bodies: list[dict[str, Any]]
    ) -> Op[list[Submitted]]:
        cid = yield from self._company_id_op(company)
        data = yield Call(
            "POST", api_path("companies", cid, "content-jobs", "batch"), json={"jobs": bodies}
        )
        return [Submitted.from_dict(item) for item in data["jobs"]]

    def _get_op(self, job_id: str) -> Op[Job]:
        return Job.from_dict((yield Call("GET", api_path("content-jobs", job_id))))

    def _act_op(self, job_id: str, action: str) -> Op[Job]:
        job = yield from self._get_op(job_id)
        path = api_path("companies", job.company_id, "content-jobs", job.id, action)
        return Job.from_dict((yield Call("POST", path)))

    def _jobs_page_op(
        self, company_id: str, params: dict[str, Any], cursor: str | None
    ) -> Op[tuple[list[Job], str | None]]:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        data = yield Call("GET", api_path("companies", company_id, "content-jobs"), params=query)
        return [Job.from_dict(item) for item in data["items"]], data.get("nextCursor")

    # assets and maintenance

    def _assets_page_op(
        self, company_id: str, params: dict[str, Any], cursor: str | None
    ) -> Op[tuple[list[Asset], str | None]]:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        data = yield Call("GET", api_path("companies", company_id, "assets"), params=query)
        return [Asset.from_dict(item) for item in data["items"]], data.get("nextCursor")

    def _asset_op(self, asset_id: str, company: str | None) -> Op[Asset]:
        """An asset's metadata; without a company, looked for in each company the token
        sees (asset routes are per company)."""
        for cid in (yield from self._company_ids_op(company)):
            try:
                data = yield Call("GET", api_path("companies", cid, "assets", asset_id))
            except NotFound:
                continue
            return Asset.from_dict(data)
        raise NotFound(404, "not_found", f"asset {asset_id!r} not found")

    def _upload_op(self, path: Path, company: str | None, content_type: str | None) -> Op[Asset]:
        cid = yield from self._company_id_op(company)
        ctype = content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with path.open("rb") as file:  # httpx streams it in chunks
            call = Call(
                "POST",
                api_path("companies", cid, "assets"),
                files={"file": (path.name, file, ctype)},
            )
            data = yield call
        return Asset.from_dict(data)

    # schedules

    def _schedules_op(self, company: str | None) -> Op[list[Schedule]]:
        cid = yield from self._company_id_op(company)
        found: list[Schedule] = []
        cursor = None
        while True:
            params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            data = yield Call("GET", api_path("companies", cid, "schedules"), params=params)
            found.extend(Schedule.from_dict(item) for item in data["items"])
            cursor = data.get("nextCursor")
            if not cursor:
                return found

    def _schedule_path_op(self, company: str | None, schedule: str) -> Op[str]:
        """The path of a schedule given by id or by name (names are unique within a
        company)."""
        cid = yield from self._company_id_op(company)
        for item in (yield from self._schedules_op(cid)):
            if schedule in (item.id, item.name):
                return api_path("companies", cid, "schedules", item.id)
        raise NotFound(404, "not_found", f"no schedule named or with id {schedule!r}")

    def _create_schedule_op(self, company: str | None, body: dict[str, Any]) -> Op[Schedule]:
        cid = yield from self._company_id_op(company)
        data = yield Call("POST", api_path("companies", cid, "schedules"), json=body)
        return Schedule.from_dict(data)

    def _get_schedule_op(self, company: str | None, schedule: str) -> Op[Schedule]:
        path = yield from self._schedule_path_op(company, schedule)
        return Schedule.from_dict((yield Call("GET", path)))

    def _update_schedule_op(
        self, company: str | None, schedule: str, body: dict[str, Any]
    ) -> Op[Schedule]:
        path = yield from self._schedule_path_op(company, schedule)
        return Schedule.from_dict((yield Call("PATCH", path, json=body)))

    def _delete_schedule_op(self, company: str | None, schedule: str) -> Op[None]:
        path = yield from self._schedule_path_op(company, schedule)
        yield Call("DELETE", path)

    def _stats_op(self) -> Op[dict[str, Any]]:
        return (yield Call("GET", "/api/stats"))

    def _bulk_op(self, action: str, company: str | None, body: dict[str, Any]) -> Op[dict]:
        """A bulk retry or cancel: of one company; without one, of the token's only
        company, or of every company (the operator's route) when it sees several."""
        ids = yield from self._company_ids_op(company)
        if len(ids) == 1:
            path = api_path("companies", ids[0], "content-jobs", f"bulk-{action}")
        else:
            path = f"/api/content-jobs/bulk-{action}"
        # Every matching job is acted on before the answer: no time limit.
        return (yield Call("POST", path, json=body, timeout=None))

    def _prune_op(self, older_than: float, dry_run: bool) -> Op[dict[str, Any]]:
        body = {"olderThanSeconds": older_than, "dryRun": dry_run}
        return (yield Call("POST", "/api/content-jobs/prune", json=body, timeout=None))

    def _gc_op(self) -> Op[dict[str, Any]]:
        return (yield Call("POST", "/api/gc", timeout=None)) or {}

    # events

    def _follow_op(
        self,
        company: str | None,
        job: str | None,
        last_event_id: int | None,
        reconnect_for: float | None,
        until: int | None = None,
    ) -> Op[Follow]:
        """`until` (a job's history): replay the job's events up to that id, past any
        terminal event before it."""
        options = {"last_event_id": last_event_id, "reconnect_for": reconnect_for}
        if job is not None:
            found = yield from self._get_op(job)
            path = api_path("companies", found.company_id, "content-jobs", found.id, "events")
            return Follow(self.url, path, per_job=True, until=until, **options)
        if company is not None:
            cid = yield from self._company_id_op(company)
            return Follow(self.url, api_path("companies", cid, "events"), per_job=False, **options)
        # Everything the token sees: the operator feed, or a company token's own feed.
        return Follow(self.url, "/api/events", per_job=False, own_feed_on_403=True, **options)

    def _own_feed_op(self) -> Op[str]:
        return api_path("companies", (yield from self._company_id_op(None)), "events")


#: One status, several (any of them), or None for every status.
Statuses = str | JobStatus | Iterable[str | JobStatus] | None


def _status_list(status: Statuses) -> list[str] | None:
    if status is None:
        return None
    if isinstance(status, str):
        return [str(status)]
    return [str(s) for s in status]


def job_params(
    status: Statuses,
    job_type: str | None,
    source_task_id: str | None,
    page_size: int,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": page_size}
    statuses = _status_list(status)
    if statuses is not None:
        params["status"] = ",".join(statuses)
    if job_type is not None:
        params["jobType"] = job_type
    if source_task_id is not None:
        params["sourceTaskId"] = source_task_id
    if created_after is not None:
        params["createdAfter"] = iso(created_after)
    if created_before is not None:
        params["createdBefore"] = iso(created_before)
    return params


def bulk_body(
    status: Statuses,
    job_type: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    dry_run: bool,
) -> dict[str, Any]:
    """The body of a bulk retry or cancel (web/job_filters.py reads it)."""
    body: dict[str, Any] = {"dryRun": dry_run}
    statuses = _status_list(status)
    if statuses is not None:
        body["status"] = statuses
    if job_type is not None:
        body["jobType"] = job_type
    if created_after is not None:
        body["createdAfter"] = iso(created_after)
    if created_before is not None:
        body["createdBefore"] = iso(created_before)
    return body


def asset_params(
    source_task_id: str | None, page_size: int, job_id: str | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": page_size}
    if source_task_id is not None:
        params["sourceTaskId"] = source_task_id
    if job_id is not None:
        params["jobId"] = job_id
    return params


def schedule_body(fields: Mapping[str, Any], *, keep_none: bool = False) -> dict[str, Any]:
    """The wire body of a schedule's fields (Python names, `jobs.SCHEDULE_FIELDS`):
    None means "left out" in a create, and "clear it" in a change (`keep_none`)."""
    unknown = sorted(set(fields) - set(SCHEDULE_FIELDS))
    if unknown:
        raise TypeError(f"unknown schedule field(s): {', '.join(unknown)}")
    return {
        SCHEDULE_FIELDS[name]: dict(value) if name == "input" and value is not None else value
        for name, value in fields.items()
        if keep_none or value is not None
    }
