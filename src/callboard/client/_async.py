"""`AsyncClient`: the asynchronous client (httpx.AsyncClient on anyio), for trio and
asyncio alike."""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, Unpack

import anyio
import httpx
from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from ..jobs import Job, JobEvent, JobSpec, JobTypeInfo, Schedule, SubmitOptions
from ._core import (
    DEFAULT_URL,
    ApiBase,
    Call,
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
from .errors import ClientError, WaitTimeout, decode_json, raise_for, transport_error
from .models import Asset, Downloaded, Event, StreamState, Submitted

T = TypeVar("T")


async def _finish(body: AsyncIterator[Any]) -> None:
    """Finish an httpx body iterator we stopped reading early. httpx nests several
    async generators under it; closing the outer one leaves the inner ones suspended,
    and trio warns when the garbage collector finds them (docs/architecture.md, "Stack
    notes"). Resuming it inside an already-cancelled scope makes the cancellation raise
    at the network read, which unwinds every one of them."""
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            while True:
                await body.__anext__()
        except Exception:  # StopAsyncIteration, or the read failing: we are leaving anyway
            pass


class _SseReader:
    """The events of one event-stream response (httpx-sse's decoders). Not an async
    generator, so that leaving early can `_finish` httpx's body iterator."""

    def __init__(self, response: httpx.Response) -> None:
        self._texts = response.aiter_text()
        self._lines = SSELineDecoder()
        self._decoder = SSEDecoder()
        self._pending: deque[ServerSentEvent] = deque()
        self._done = False

    async def next(self) -> ServerSentEvent | None:
        """The next message, or None when the response has ended."""
        while not self._pending:
            if self._done:
                return None
            try:
                text = await self._texts.__anext__()
            except StopAsyncIteration:
                self._done = True
                lines = self._lines.flush()
            except BaseException:
                self._done = True  # the error unwound httpx's iterators
                raise
            else:
                lines = self._lines.decode(text)
            for line in lines:
                sse = self._decoder.decode(line)
                if sse is not None:
                    self._pending.append(sse)
        return self._pending.popleft()

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            await _finish(self._texts)


def _ignore_state(state: StreamState) -> None:
    """The default `on_state`: nobody is watching the connection."""


class AsyncEventStream(AsyncIterator[Event]):
    """What `AsyncClient.events()` returns. Use it as `async with client.events(...) as
    events: async for event in events: ...`: leaving the block closes the connection at
    once (an abandoned async iterator is otherwise closed late, with a warning)."""

    def __init__(self, events: AsyncGenerator[Event, None]) -> None:
        self._events = events

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> Event:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncPages(AsyncIterator[T]):
    """What `AsyncClient.list()` and `.assets()` return: fetches the next page only when
    you reach it. A plain object (not an async generator), so breaking out early needs
    no cleanup."""

    def __init__(
        self,
        client: AsyncClient,
        company: str | None,
        page_op: Callable[[str, dict[str, Any], str | None], Op[tuple[list[T], str | None]]],
        params: dict[str, Any],
        created: Callable[[T], Any],
    ) -> None:
        self._client = client
        self._company = company
        self._page_op = page_op
        self._params = params
        self._created = created
        self._merge: Merge[T] | None = None

    def __aiter__(self) -> AsyncPages[T]:
        return self

    async def __anext__(self) -> T:
        if self._merge is None:
            keys = await self._client._drive(self._client._company_ids_op(self._company))
            self._merge = Merge(keys, self._created)
        merge = self._merge
        for key in merge.wanted():
            page = await self._client._drive(self._page_op(key, self._params, merge.cursors[key]))
            merge.feed(key, *page)
        item = merge.pop()
        if item is None:
            raise StopAsyncIteration
        return item


class AsyncClient(ApiBase):
    """The asynchronous client, for trio or asyncio (httpx runs on anyio). The same
    methods as `Client`, awaited; `events()` returns an `AsyncEventStream` and `list()`
    / `assets()` return `AsyncPages`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        idle_timeout: float = 45.0,
    ) -> None:
        super().__init__(url, token, timeout, idle_timeout)
        self._http = httpx.AsyncClient(**self._http_options())

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> Any:
        try:
            extra = {} if call.timeout is ... else {"timeout": call.timeout}
            response = await self._http.request(
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

    async def _drive(self, op: Op[T]) -> T:
        result: Any = None
        error: ClientError | None = None
        while True:
            try:
                call = op.send(result) if error is None else op.throw(error)
            except StopIteration as done:
                return done.value
            try:
                result, error = await self._send(call), None
            except ClientError as exc:
                result, error = None, exc

    # job types

    async def job_types(self) -> list[JobTypeInfo]:
        """Every job type the server runs, by name, with its defaults (any token)."""
        return await self._drive(self._job_types_op())

    # companies and tokens

    async def create_company(self, name: str) -> dict[str, Any]:
        return await self._drive(self._create_company_op(name))

    async def companies(self) -> list[dict[str, Any]]:
        return await self._drive(self._companies_op())

    async def company_id(self, name_or_id: str | None) -> str:
        return await self._drive(self._company_id_op(name_or_id))

    async def company(self, company: str) -> dict[str, Any]:
        """A company by name or id, with its cap on running jobs (`maxRunning`)."""
        return await self._drive(self._company_op(company))

    async def set_max_running(self, company: str, max_running: int | None) -> dict[str, Any]:
        """Cap the company's running jobs on every node together; None lifts the cap
        (operator). Returns the company."""
        return await self._drive(self._set_max_running_op(company, max_running))

    async def create_token(self, company: str, label: str) -> dict[str, Any]:
        return await self._drive(self._create_token_op(company, label))

    async def tokens(self, company: str) -> list[dict[str, Any]]:
        return await self._drive(self._tokens_op(company))

    async def revoke_token(self, company: str, token_id: str) -> None:
        await self._drive(self._revoke_token_op(company, token_id))

    # schedules

    async def create_schedule(
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
        timeout: float | None = None,  # noqa: ASYNC109 - the jobs' timeout
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
        return await self._drive(self._create_schedule_op(company, body))

    async def schedules(self, company: str | None = None) -> list[Schedule]:
        """Every schedule of the company, newest first."""
        return await self._drive(self._schedules_op(company))

    async def get_schedule(self, schedule: str, company: str | None = None) -> Schedule:
        """A schedule by id or name."""
        return await self._drive(self._get_schedule_op(company, schedule))

    async def update_schedule(
        self, schedule: str, *, company: str | None = None, **changes: Any
    ) -> Schedule:
        """Change fields (the keywords of `create_schedule`); None clears one."""
        body = schedule_body(changes, keep_none=True)
        return await self._drive(self._update_schedule_op(company, schedule, body))

    async def pause_schedule(self, schedule: str, company: str | None = None) -> Schedule:
        return await self.update_schedule(schedule, company=company, paused=True)

    async def resume_schedule(self, schedule: str, company: str | None = None) -> Schedule:
        return await self.update_schedule(schedule, company=company, paused=False)

    async def delete_schedule(self, schedule: str, company: str | None = None) -> None:
        await self._drive(self._delete_schedule_op(company, schedule))

    # jobs

    async def submit(
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
        return await self._drive(self._submit_op(company, body))

    async def submit_many(
        self, company: str | None, jobs: Iterable[JobSpec | Mapping[str, Any]]
    ) -> list[Submitted]:
        return await self._drive(self._submit_many_op(company, [spec_body(j) for j in jobs]))

    async def get(self, job_id: str) -> Job:
        return await self._drive(self._get_op(job_id))

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
    ) -> AsyncPages[Job]:
        params = job_params(
            status, job_type, source_task_id, page_size, created_after, created_before
        )
        return AsyncPages(self, company, self._jobs_page_op, params, lambda job: job.created_at)

    async def cancel(self, job_id: str) -> Job:
        return await self._drive(self._act_op(job_id, "cancel"))

    async def retry(self, job_id: str) -> Job:
        return await self._drive(self._act_op(job_id, "retry"))

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:  # noqa: ASYNC109 - as RunningBoard.wait
        """As `Client.wait`: the job once terminal; `WaitTimeout` after `timeout` s."""
        job = await self.get(job_id)
        if job.terminal:
            return job
        try:
            with anyio.fail_after(timeout):
                async with self.events(job=job.id) as events:
                    async for event in events:
                        if isinstance(event, JobEvent):
                            job = event.job
                            if event.terminal:
                                return job
        except TimeoutError:
            raise WaitTimeout(
                0, "timeout", f"job {job.id} is still {job.status} after {timeout:g}s"
            ) from None
        return await self.get(job.id)

    async def history(self, job_id: str) -> list[JobEvent]:
        """As `Client.history`: a job's stored events, oldest first."""
        latest = None
        async with self.events(job=job_id) as events:
            async for event in events:
                if isinstance(event, JobEvent):
                    latest = event.id
                    break
        if latest is None:
            return []
        replay = self._events(None, job_id, 0, 60.0, _ignore_state, until=latest)
        async with AsyncEventStream(replay) as events:
            return [event async for event in events if isinstance(event, JobEvent)]

    # events

    def events(
        self,
        company: str | None = None,
        job: str | None = None,
        last_event_id: int | None = None,
        *,
        reconnect_for: float | None = 60.0,
        on_state: Callable[[StreamState], None] | None = None,
    ) -> AsyncEventStream:
        """Follow an event stream (see the package docstring). `on_state`, if given, is
        called with a `StreamState` each time the connection opens or drops, so a
        display can say "connected" / "reconnecting in Ns" without parsing SSE itself;
        `reconnect_for=None` keeps reconnecting for as long as it takes."""
        return AsyncEventStream(
            self._events(company, job, last_event_id, reconnect_for, on_state or _ignore_state)
        )

    async def _events(
        self,
        company: str | None,
        job: str | None,
        last_event_id: int | None,
        reconnect_for: float | None,
        on_state: Callable[[StreamState], None],
        until: int | None = None,
    ) -> AsyncGenerator[Event, None]:
        follow = await self._drive(
            self._follow_op(company, job, last_event_id, reconnect_for, until=until)
        )
        while not follow.finished:
            delay = 0.0
            reason = "the server ended the stream"
            try:
                async with self._http.stream(
                    "GET", follow.path, headers=follow.headers(), timeout=self._stream_timeout()
                ) as response:
                    if response.status_code != 200:
                        await response.aread()
                    if follow.opened(response):
                        on_state(StreamState("connected", last_event_id=follow.last_id))
                        reader = _SseReader(response)
                        try:
                            while (sse := await reader.next()) is not None:
                                event = follow.accept(sse)
                                if event is not None:
                                    yield event
                                if follow.finished:
                                    return
                        finally:
                            await reader.aclose()
                        delay = follow.ended()
            except (httpx.TransportError, RetryLater) as exc:
                delay = follow.failed(exc, time.monotonic())
                reason = str(exc) or type(exc).__name__
            if follow.finished:
                return
            if follow.needs_own_feed:
                # Not a drop: the operator feed refused a company token, so switch feeds.
                follow.path = await self._drive(self._own_feed_op())
                follow.needs_own_feed = False
            else:
                on_state(
                    StreamState(
                        "reconnecting", retry_in=delay, reason=reason, last_event_id=follow.last_id
                    )
                )
            await anyio.sleep(delay)

    async def stats(self) -> dict[str, Any]:
        """Operator: `GET /api/stats` as sent (counts by status, workers, throughput)."""
        return await self._drive(self._stats_op())

    # assets

    def assets(
        self,
        company: str | None = None,
        *,
        source_task_id: str | None = None,
        job_id: str | None = None,
        page_size: int = 100,
    ) -> AsyncPages[Asset]:
        params = asset_params(source_task_id, page_size, job_id)
        return AsyncPages(self, company, self._assets_page_op, params, asset_created)

    async def asset(self, asset_id: str, company: str | None = None) -> Asset:
        return await self._drive(self._asset_op(asset_id, company))

    async def upload(
        self,
        path: str | os.PathLike[str],
        company: str | None = None,
        *,
        content_type: str | None = None,
    ) -> Asset:
        """As `Client.upload`; the file is read in chunks as the request goes out (an
        upload is capped at 10 MiB by default)."""
        return await self._drive(self._upload_op(Path(path), company, content_type))

    async def download(
        self,
        asset_id: str,
        path: str | os.PathLike[str] | None = None,
        *,
        company: str | None = None,
        redirect: bool = False,
    ) -> Downloaded:
        """As `Client.download`; file writes run in worker threads."""
        asset = await self.asset(asset_id, company)
        target = download_target(path, asset)
        fd, temp = await anyio.to_thread.run_sync(open_temp, target)
        os.close(fd)
        try:
            digest, size = hashlib.sha256(), 0
            async with await anyio.open_file(temp, "wb") as out:
                async with self._asset_bytes(asset, redirect) as response:
                    chunks = response.aiter_bytes()
                    try:
                        async for chunk in chunks:
                            await out.write(chunk)
                            digest.update(chunk)
                            size += len(chunk)
                    finally:
                        await _finish(chunks)
                verify_download(asset, digest.hexdigest(), size)
                await out.flush()
                await anyio.to_thread.run_sync(os.fsync, out.wrapped.fileno())
            await anyio.to_thread.run_sync(os.replace, temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)  # also on cancellation: a quick local unlink
            raise
        return Downloaded(target, asset)

    @asynccontextmanager
    async def _asset_bytes(self, asset: Asset, redirect: bool) -> AsyncIterator[httpx.Response]:
        """As `Client._asset_bytes`."""
        content = api_path("companies", asset.company_id, "assets", asset.id, "content")
        params = content_params(redirect)
        try:
            async with self._http.stream("GET", content, params=params) as response:
                if not (redirect and response.status_code == 307):
                    if response.status_code >= 400:
                        await response.aread()
                        raise_for(response)
                    check_etag(asset, response)
                    yield response
                    return
                location = response.headers["location"]
        except httpx.TransportError as exc:
            raise transport_error(self.url, exc) from exc
        try:
            async with (
                httpx.AsyncClient(timeout=self.timeout, verify=tls_verify(location)) as store,
                store.stream("GET", location) as response,
            ):
                if response.status_code >= 400:
                    await response.aread()
                    raise store_refused(asset, response)
                yield response
        except httpx.TransportError as exc:
            raise transport_error(origin(location), exc) from exc

    async def bulk_retry(
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
        return await self._drive(self._bulk_op("retry", company, body))

    async def bulk_cancel(
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
        return await self._drive(self._bulk_op("cancel", company, body))

    async def prune(self, older_than: float, *, dry_run: bool = False) -> dict[str, Any]:
        """Operator: delete the jobs that finished more than `older_than` seconds ago,
        with their events; returns how many matched and were deleted."""
        return await self._drive(self._prune_op(older_than, dry_run))

    async def gc(self) -> dict[str, Any]:
        return await self._drive(self._gc_op())
