"""Copy every asset from one backend to another, verified: what `callboard storage copy`
runs to move an installation (from the local disk to S3, or back).

The rows say what must be there: every `assets` row of every company, walked in id
order a page at a time (`JobStore.list_all_assets`), so rows added while it runs are
picked up if they sort after the walk's position and by the next run otherwise. For
each row, under the same object key in the target:

- an object already there is read back and hashed: if its size and sha256 are the
  row's it is kept ("already there"), otherwise it is written again. So a run
  interrupted anywhere is resumed by running it again, and a damaged copy is mended;
- otherwise the source object is streamed into a target write (`BackendWriter`),
  hashed as it goes, and committed only if its size and sha256 are the row's. On a
  mismatch the write is aborted and the asset reported failed: no object that differs
  from its row is ever committed under a key (one that was there stays as it was);
- a row whose source object is gone is reported ("missing at source"), not fatal.

Memory is bounded: each of the `parallel` copies streams (one FLUSH_BYTES buffer here,
plus what the target's writer holds: about 8 MiB for S3's part). Errors of one asset
(a read that fails, a write refused) fail that asset; after GIVE_UP_AFTER errors in a
row the storage, not the assets, is at fault, and the run stops rather than fail every
remaining asset the same way. A cancelled copy aborts its writes in progress, shielded
within `writer.CLEANUP_SECONDS`, as a node's failed write does.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from enum import StrEnum

import trio

from ..errors import CallboardError
from ..jobs import Asset
from ..store.base import JobStore
from .backend import BackendWriter, StorageBackend
from .writer import FLUSH_BYTES, cleanup

log = logging.getLogger("callboard.storage")

#: Rows read from the store at a time.
PAGE = 500
#: Copies in progress at once: object stores answer each request in tens of
#: milliseconds, so one at a time would leave a copy of many small objects idle.
PARALLEL = 4
#: Assets failing in a row with an error (not a mismatch) before the run stops.
GIVE_UP_AFTER = 10


class Outcome(StrEnum):
    COPIED = "copied"
    #: Copied over an object that was in the target but did not match its row.
    REPLACED = "replaced"
    ALREADY_THERE = "already there"
    MISSING = "missing at source"
    FAILED = "failed"
    #: Dry run: not in the target, present at the source.
    WOULD_COPY = "would copy"
    #: Dry run: in the target (not read back: a dry run only looks).
    PRESENT = "in the target"


@dataclass(frozen=True, slots=True)
class CopyEvent:
    """One asset settled: what `progress` is called with."""

    asset: Asset
    outcome: Outcome
    detail: str | None = None


@dataclass(slots=True)
class CopyReport:
    """The counts of one run. In a dry run `copied` and `bytes_copied` count what would
    be copied and `already_there` what is in the target (unverified)."""

    dry_run: bool
    checked: int = 0
    copied: int = 0
    replaced: int = 0  # of `copied`: over an object that did not match its row
    already_there: int = 0
    missing: int = 0
    failed: int = 0
    bytes_copied: int = 0
    #: Why the run stopped before the last row, if it did.
    stopped: str | None = None

    @property
    def complete(self) -> bool:
        """Every row was reached and each is in the target, verified (a dry run: would
        be, as far as looking can tell)."""
        return self.stopped is None and self.missing == 0 and self.failed == 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _short(sha256: str) -> str:
    return sha256[:12] + "..."


class AssetCopy:
    """One run: `await AssetCopy(store, source, target).run()`; `report` holds the counts
    so far at any time (also after a cancelled run)."""

    def __init__(
        self,
        store: JobStore,
        source: StorageBackend,
        target: StorageBackend,
        *,
        dry_run: bool = False,
        parallel: int = PARALLEL,
        progress: Callable[[CopyEvent], None] | None = None,
        page: int = PAGE,
    ) -> None:
        if parallel < 1 or page < 1:
            raise ValueError("parallel and page must be at least 1")
        self.store = store
        self.source = source
        self.target = target
        self.dry_run = dry_run
        self.parallel = parallel
        self.progress = progress
        self.page = page
        self.report = CopyReport(dry_run=dry_run)
        self._errors_in_a_row = 0

    async def run(self) -> CopyReport:
        for backend in (self.source, self.target):
            # Unreachable storage (a missing bucket, no credentials) is one error now,
            # not one per asset.
            check = getattr(backend, "check", None)
            if check is not None:
                await check()
        send, receive = trio.open_memory_channel[Asset](0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._walk, send)
            async with receive:
                for _ in range(self.parallel):
                    nursery.start_soon(self._work, receive.clone(), nursery.cancel_scope)
        return self.report

    async def _walk(self, send: trio.MemorySendChannel[Asset]) -> None:
        async with send:
            after = None
            while rows := await self.store.list_all_assets(after, self.page):
                for row in rows:
                    await send.send(row)
                after = rows[-1].id

    async def _work(self, rows: trio.MemoryReceiveChannel[Asset], scope: trio.CancelScope) -> None:
        async with rows:
            async for row in rows:
                try:
                    outcome, detail = await self._one(row)
                    error = False
                except (OSError, CallboardError) as exc:
                    outcome, detail, error = Outcome.FAILED, _describe(exc), True
                if self.report.stopped:
                    return  # settled after the run gave up, before its cancel reached here
                self._settle(CopyEvent(row, outcome, detail), error)
                if self._errors_in_a_row >= GIVE_UP_AFTER:
                    self.report.stopped = (
                        f"stopped after {GIVE_UP_AFTER} assets in a row failed; the last: {detail}"
                    )
                    scope.cancel()
                    return

    def _settle(self, event: CopyEvent, error: bool) -> None:
        report = self.report
        report.checked += 1
        self._errors_in_a_row = self._errors_in_a_row + 1 if error else 0
        match event.outcome:
            case Outcome.COPIED | Outcome.REPLACED | Outcome.WOULD_COPY:
                report.copied += 1
                if event.outcome is Outcome.REPLACED:
                    report.replaced += 1
                report.bytes_copied += event.asset.byte_size
            case Outcome.ALREADY_THERE | Outcome.PRESENT:
                report.already_there += 1
            case Outcome.MISSING:
                report.missing += 1
            case Outcome.FAILED:
                report.failed += 1
        if self.progress is not None:
            self.progress(event)

    async def _one(self, row: Asset) -> tuple[Outcome, str | None]:
        key = row.object_key
        if self.dry_run:
            if await self.target.exists(key):
                return Outcome.PRESENT, None
            if await self.source.exists(key):
                return Outcome.WOULD_COPY, None
            return Outcome.MISSING, None
        there = await self._in_target(row)
        if there is True:
            return Outcome.ALREADY_THERE, None
        return await self._copy(row, Outcome.REPLACED if there is False else Outcome.COPIED)

    async def _in_target(self, row: Asset) -> bool | None:
        """True if the target holds the row's object, False if it holds something
        else under its key, None if nothing."""
        digest = hashlib.sha256()
        size = 0
        async with aclosing(self.target.read(row.object_key)) as chunks:
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > row.byte_size:
                        return False
                    await trio.to_thread.run_sync(digest.update, chunk)
            except FileNotFoundError:
                if size:
                    raise
                return None
        return size == row.byte_size and digest.hexdigest() == row.sha256

    async def _copy(self, row: Asset, done: Outcome) -> tuple[Outcome, str | None]:
        """Stream the source object into the target and commit it if it matches its
        row (`done`); otherwise nothing is committed."""
        key = row.object_key
        digest = hashlib.sha256()
        async with aclosing(self.source.read(key)) as chunks:
            try:
                first = await anext(chunks, None)
            except FileNotFoundError:
                return Outcome.MISSING, None
            sink = await self.target.start_write(key, digest.update)
            committed = False
            try:
                size = await _stream(sink, first, chunks, row.byte_size)
                mismatch = _mismatch(row, size, digest.hexdigest())
                if mismatch is None:
                    await sink.commit()
                    committed = True
            finally:
                if not committed:
                    await cleanup(key, sink.abort)
        if mismatch is not None:
            return Outcome.FAILED, mismatch
        return done, None


def _mismatch(row: Asset, size: int, sha256: str) -> str | None:
    """What is wrong with bytes copied for `row` (`size` past the row's: stopped
    there), or None."""
    if size == row.byte_size and sha256 == row.sha256:
        return None
    found = "more bytes" if size > row.byte_size else f"{size} bytes, sha256 {_short(sha256)}"
    return (
        f"the source object does not match its row: {found} (the row says "
        f"{row.byte_size} bytes, sha256 {_short(row.sha256)})"
    )


async def _stream(
    sink: BackendWriter,
    first: bytes | None,
    chunks: AsyncGenerator[bytes, None],
    limit: int,
) -> int:
    """Write `first` and the rest of `chunks` to `sink` in FLUSH_BYTES pieces; the bytes
    read, stopping as soon as they are more than `limit` (what a row says cannot be
    more)."""
    buffer = bytearray()
    size = 0
    chunk = first
    while chunk is not None:
        size += len(chunk)
        if size > limit:
            return size
        buffer += chunk
        while len(buffer) >= FLUSH_BYTES:
            piece = bytes(buffer[:FLUSH_BYTES])
            del buffer[:FLUSH_BYTES]
            await sink.write(piece)
        chunk = await anext(chunks, None)
    if buffer:
        await sink.write(bytes(buffer))
    return size
