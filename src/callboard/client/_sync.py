"""`Client`: the synchronous client (httpx.Client)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, Unpack

import httpx
from httpx_sse import ServerSentEvent

# httpx-sse's decoders, fed by hand: `wait`'s deadline needs to see every chunk (ping
# comments too, which the public API hides), and the async client must control how
# httpx's body iterators end (see _async._finish).
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from ..jobs import Job, JobEvent, JobSpec, JobTypeInfo, Schedule, SubmitOptions
from ._core import (
    DEFAULT_URL,
    ApiBase,
    Call,
    Deadline,
    Follow,
    Merge,
    Op,
    RetryLater,
    Statuses,
    api_path,
    asset_created,
    asset_params,
    bulk_body,
    check_etag,
    content_params,
    download_target,
    job_params,
    open_temp,
    origin,
    schedule_body,
    spec_body,
    store_refused,
    tls_verify,
    verify_download,
)
from .errors import ClientError, decode_json, raise_for, transport_error
from .models import Asset, Downloaded, Event, Submitted

T = TypeVar("T")


class EventIterator(Iterator[Event]):
    """What `Client.events()` returns: an iterator that is also a context manager (the
    connection closes when the block ends)."""

    def __init__(self, events: Generator[Event, None, None]) -> None:
        self._events = events

    def __iter__(self) -> EventIterator:
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> EventIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client(ApiBase):
    """The synchronous client. `Client(url, token)`; use as a context manager or call
    `close()`. Not thread-safe (one httpx.Client)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        idle_timeout: float = 45.0,
    ) -> None:
        super().__init__(url, token, timeout, idle_timeout)
        self._http = httpx.Client(**self._http_options())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> Any:
        try:
            extra = {} if call.timeout is ... else {"timeout": call.timeout}
            response = self._http.request(
                call.method,
                call.path,
                params=call.params,
                json=call.json,
                files=call.files,
                **extra,
            )
        except httpx.TransportError as exc:
            raise transport_error(self.url, exc) from exc
        raise_for(response)
        return decode_json(self.url, response)

    def _drive(self, op: Op[T]) -> T:
        result: Any = None
        error: ClientError | None = None
        while True:
            try:
                call = op.send(result) if error is None else op.throw(error)
            except StopIteration as done:
                return done.value
            try:
                result, error = self._send(call), None
            except ClientError as exc:
                result, error = None, exc

    # job types

    def job_types(self) -> list[JobTypeInfo]:
        """Every job type the server runs, by name, with its defaults (any token)."""
        return self._drive(self._job_types_op())

    # companies and tokens

    def create_company(self, name: str) -> dict[str, Any]:
        return self._drive(self._create_company_op(name))

    def companies(self) -> list[dict[str, Any]]:
        return self._drive(self._companies_op())

    def company_id(self, name_or_id: str | None) -> str:
        """A company's id from its name or id (None: the only company the token sees)."""
        return self._drive(self._company_id_op(name_or_id))

    def company(self, company: str) -> dict[str, Any]:
        """A company by name or id, with its cap on running jobs (`maxRunning`)."""
        return self._drive(self._company_op(company))

    def set_max_running(self, company: str, max_running: int | None) -> dict[str, Any]:
        """Cap the company's running jobs on every node together; None lifts the cap
        (operator). Returns the company."""
        return self._drive(self._set_max_running_op(company, max_running))

    def create_token(self, company: str, label: str) -> dict[str, Any]:
        return self._drive(self._create_token_op(company, label))

    def tokens(self, company: str) -> list[dict[str, Any]]:
        return self._drive(self._tokens_op(company))

    def revoke_token(self, company: str, token_id: str) -> None:
        self._drive(self._revoke_token_op(company, token_id))

    # schedules

    def create_schedule(
        self,
        name: str,
        job_type: str,
        input: Mapping[str, Any] | None = None,
        *,
        company: str | None = None,
        cron: str | None = None,
        every: float | None = None,
        timezone: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        catch_up: str | None = None,
        paused: bool | None = None,
    ) -> Schedule:
        """A schedule making a `job_type` job at every tick of `cron` (five fields, in
        `timezone`, UTC by default) or every `every` seconds."""
        body = schedule_body(
            {
                "name": name,
                "job_type": job_type,
                "input": input,
                "cron": cron,
                "every": every,
                "timezone": timezone,
                "priority": priority,
                "max_attempts": max_attempts,
                "timeout": timeout,
                "catch_up": catch_up,
                "paused": paused,
            }
        )
        return self._drive(self._create_schedule_op(company, body))

    def schedules(self, company: str | None = None) -> list[Schedule]:
        """Every schedule of the company, newest first."""
        return self._drive(self._schedules_op(company))

    def get_schedule(self, schedule: str, company: str | None = None) -> Schedule:
        """A schedule by id or name."""
        return self._drive(self._get_schedule_op(company, schedule))

    def update_schedule(
        self, schedule: str, *, company: str | None = None, **changes: Any
    ) -> Schedule:
        """Change fields (the keywords of `create_schedule`); None clears one."""
        body = schedule_body(changes, keep_none=True)
        return self._drive(self._update_schedule_op(company, schedule, body))

    def pause_schedule(self, schedule: str, company: str | None = None) -> Schedule:
        return self.update_schedule(schedule, company=company, paused=True)

    def resume_schedule(self, schedule: str, company: str | None = None) -> Schedule:
        return self.update_schedule(schedule, company=company, paused=False)

    def delete_schedule(self, schedule: str, company: str | None = None) -> None:
        self._drive(self._delete_schedule_op(company, schedule))

    # jobs

    def submit(
        self,
        company: str | None,
        job_type: str,
        input: Mapping[str, Any] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Submitted:
        """Submit one job; it is stored and queued when this returns. `options` are
        the submit options of `callboard.jobs.SUBMIT_OPTIONS` (`priority`, `delay`,
        `timeout`, ...)."""
        body = JobSpec(job_type, input or {}, **options).to_wire()
        return self._drive(self._submit_op(company, body))

    def submit_many(
        self, company: str | None, jobs: Iterable[JobSpec | Mapping[str, Any]]
    ) -> list[Submitted]:
        """Submit 1 to 1,000 jobs in one transaction: all are stored, or none."""
        return self._drive(self._submit_many_op(company, [spec_body(j) for j in jobs]))

    def get(self, job_id: str) -> Job:
        return self._drive(self._get_op(job_id))

    def list(
        self,
        company: str | None = None,
        *,
        status: Statuses = None,
        job_type: str | None = None,
        source_task_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[Job]:
        """Jobs newest first, following the cursor page by page as you iterate. Without
        a company: every company the token sees, merged newest first. `status` one or
        several (any of them); created_after <= created_at < created_before."""
        params = job_params(
            status, job_type, source_task_id, page_size, created_after, created_before
        )
        return self._paged(company, self._jobs_page_op, params, lambda job: job.created_at)

    def cancel(self, job_id: str) -> Job:
        """Ask a job to stop (409 `Conflict` once it is terminal); returns the job."""
        return self._drive(self._act_op(job_id, "cancel"))

    def retry(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again (409 `Conflict` otherwise)."""
        return self._drive(self._act_op(job_id, "retry"))

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """The job once it is terminal (done, failed or cancelled), followed over its
        event stream; `WaitTimeout` after `timeout` seconds."""
        job = self.get(job_id)
        if job.terminal:
            return job
        deadline = None if timeout is None else Deadline(timeout, job)
        follow = self._drive(self._follow_op(None, job.id, None, 60.0))
        with closing(self._follow(follow, deadline)) as events:
            for event in events:
                if isinstance(event, JobEvent) and event.terminal:
                    return event.job
        return self.get(job_id)  # the stream answered 204: the job finished meanwhile

    def history(self, job_id: str) -> list[JobEvent]:
        """Every stored event of a job still within the retention window, oldest first,
        up to its latest event now: every attempt's, across retries."""
        latest = None
        with self.events(job=job_id) as events:
            for event in events:  # without Last-Event-ID the stream starts with the latest
                if isinstance(event, JobEvent):
                    latest = event.id
                    break
        if latest is None:
            return []
        follow = self._drive(self._follow_op(None, job_id, 0, 60.0, until=latest))
        with closing(self._follow(follow)) as events:
            return [event for event in events if isinstance(event, JobEvent)]

    # events

    def events(
        self,
        company: str | None = None,
        job: str | None = None,
        last_event_id: int | None = None,
        *,
        reconnect_for: float | None = 60.0,
    ) -> EventIterator:
        """Follow events: one job's (ends after its terminal event), one company's, or
        (neither) everything the token sees. `last_event_id` replays what came after
        it first. Reconnects by itself with Last-Event-ID; see the module docstring."""
        follow = self._drive(self._follow_op(company, job, last_event_id, reconnect_for))
        return EventIterator(self._follow(follow))

    def _follow(
        self, follow: Follow, deadline: Deadline | None = None
    ) -> Generator[Event, None, None]:
        while not follow.finished:
            read = (
                self.idle_timeout if deadline is None else min(self.idle_timeout, deadline.left())
            )
            delay = 0.0
            try:
                with self._http.stream(
                    "GET", follow.path, headers=follow.headers(), timeout=self._stream_timeout(read)
                ) as response:
                    if response.status_code != 200:
                        response.read()
                    if follow.opened(response):
                        for sse in _iter_sse(response, read, deadline):
                            event = follow.accept(sse)
                            if event is not None:
                                if deadline is not None and isinstance(event, JobEvent):
                                    deadline.job = event.job
                                yield event
                            if follow.finished:
                                return
                        # With a deadline the stream may have ended to shorten the read
                        # timeout: reconnect at once.
                        delay = follow.ended() if deadline is None else 0.0
            except (httpx.TransportError, RetryLater) as exc:
                delay = follow.failed(exc, time.monotonic())
            if follow.needs_own_feed:
                follow.path, follow.needs_own_feed = self._drive(self._own_feed_op()), False
            if deadline is not None:
                delay = min(delay, deadline.left())
            time.sleep(delay)

    # assets

    def assets(
        self,
        company: str | None = None,
        *,
        source_task_id: str | None = None,
        job_id: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Asset]:
        """Assets newest first, following the cursor (every visible company without one)."""
        params = asset_params(source_task_id, page_size, job_id)
        return self._paged(company, self._assets_page_op, params, asset_created)

    def asset(self, asset_id: str, company: str | None = None) -> Asset:
        return self._drive(self._asset_op(asset_id, company))

    def upload(
        self,
        path: str | os.PathLike[str],
        company: str | None = None,
        *,
        content_type: str | None = None,
    ) -> Asset:
        """Upload a file into the company's `uploads` (multipart, streamed)."""
        return self._drive(self._upload_op(Path(path), company, content_type))

    def download(
        self,
        asset_id: str,
        path: str | os.PathLike[str] | None = None,
        *,
        company: str | None = None,
        redirect: bool = False,
    ) -> Downloaded:
        """Stream an asset to `path` (a file, or a directory to put the original name in;
        default: the original name in the working directory), verifying size and sha256.
        Raises `ChecksumMismatch` and leaves no file when they do not match.

        `redirect=True` takes the bytes straight from the object store when the server
        hands out presigned URLs (S3 storage; other storage sends the bytes itself):
        this machine must reach the store. Size and sha256 are verified all the same."""
        asset = self.asset(asset_id, company)
        target = download_target(path, asset)
        fd, temp = open_temp(target)
        try:
            digest, size = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out:
                with self._asset_bytes(asset, redirect) as response:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                verify_download(asset, digest.hexdigest(), size)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return Downloaded(target, asset)

    @contextmanager
    def _asset_bytes(self, asset: Asset, redirect: bool) -> Iterator[httpx.Response]:
        """The checked answer carrying an asset's bytes: the server's, or (`redirect`,
        when the server answers 307) the object store's."""
        content = api_path("companies", asset.company_id, "assets", asset.id, "content")
        try:
            with self._http.stream("GET", content, params=content_params(redirect)) as response:
                if not (redirect and response.status_code == 307):
                    if response.status_code >= 400:
                        response.read()
                        raise_for(response)
                    check_etag(asset, response)
                    yield response
                    return
                location = response.headers["location"]
        except httpx.TransportError as exc:
            raise transport_error(self.url, exc) from exc
        # A client of its own: no token goes to the store (the URL is the credential),
        # and TLS is verified whatever the server's scheme.
        try:
            with (
                httpx.Client(timeout=self.timeout, verify=tls_verify(location)) as store,
                store.stream("GET", location) as response,
            ):
                if response.status_code >= 400:
                    response.read()
                    raise store_refused(asset, response)
                # The store's ETag is its own (not the sha256): the bytes are checked.
                yield response
        except httpx.TransportError as exc:
            raise transport_error(origin(location), exc) from exc

    def bulk_retry(
        self,
        company: str | None = None,
        *,
        status: Statuses = None,
        job_type: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Retry every failed or cancelled job the filter matches (without a company:
        every company the token sees); returns the counts (`BulkReport` in the API)."""
        body = bulk_body(status, job_type, created_after, created_before, dry_run)
        return self._drive(self._bulk_op("retry", company, body))

    def bulk_cancel(
        self,
        company: str | None = None,
        *,
        status: Statuses = None,
        job_type: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Cancel every queued or running job the filter matches; returns the counts."""
        body = bulk_body(status, job_type, created_after, created_before, dry_run)
        return self._drive(self._bulk_op("cancel", company, body))

    def prune(self, older_than: float, *, dry_run: bool = False) -> dict[str, Any]:
        """Operator: delete the jobs that finished more than `older_than` seconds ago,
        with their events; returns how many matched and were deleted."""
        return self._drive(self._prune_op(older_than, dry_run))

    def gc(self) -> dict[str, Any]:
        """Operator: delete stored files that no asset row references; returns the report."""
        return self._drive(self._gc_op())

    def _paged(
        self,
        company: str | None,
        page_op: Callable[[str, dict[str, Any], str | None], Op[tuple[list[T], str | None]]],
        params: dict[str, Any],
        created: Callable[[T], Any],
    ) -> Iterator[T]:
        merge: Merge[T] = Merge(self._drive(self._company_ids_op(company)), created)
        while True:
            for key in merge.wanted():
                merge.feed(key, *self._drive(page_op(key, params, merge.cursors[key])))
            item = merge.pop()
            if item is None:
                return
            yield item


def _iter_sse(
    response: httpx.Response, read: float, deadline: Deadline | None
) -> Iterator[ServerSentEvent]:
    """The events of one response. With a deadline, every chunk (pings included) is a
    chance to stop: when less time is left than the read timeout in force, the stream
    ends so that the caller reconnects (Last-Event-ID) with a shorter one."""
    lines, decoder = SSELineDecoder(), SSEDecoder()
    for text in response.iter_text():
        for line in lines.decode(text):
            sse = decoder.decode(line.rstrip("\n"))
            if sse is not None:
                yield sse
        if deadline is not None and deadline.at - time.monotonic() < read - 0.5:
            return
    for line in lines.flush():
        sse = decoder.decode(line.rstrip("\n"))
        if sse is not None:
            yield sse
