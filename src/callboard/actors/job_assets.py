"""JobAssets: the assets one attempt of a job writes, from the handler's save to the
job's `done` transaction.

A handler's files are written at once (streamed into `generated` storage), but their
rows wait: they go to the store with the job's `done` transition, in one transaction
(`Ledger.complete(..., assets=...)`). So a job is done with all its assets, or it is
not done and has none. What happens to the files depends on what the store knows:

- the transition committed: the rows point at them; they are the store's now;
- the attempt failed, was cancelled, lost its lease, or the node shut down before the
  transition: no row was written, so the files are deleted here (shielded, with a
  deadline; gc removes what a crash leaves);
- recording the transition failed with the store unreachable: whether it committed is
  not known here, so the files stay, and gc deletes them later if no row appeared.

Until then the files have no row, which is what gc looks for: `keep_fresh` touches
them (and any file still being written) well within gc's grace period, so a job that
runs for hours never loses the outputs it saved early.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import trio

from ..errors import AssetNotFound, InvalidRequest
from ..handlers import AssetData
from ..jobs import Asset, Job
from ..sizes import human_bytes
from ..storage.names import GENERATED, ORPHAN_GRACE_SECONDS, UPLOADS
from ..storage.writer import AssetStorage, ObjectWriter, write_chunks
from ..store.base import JobStore

log = logging.getLogger("callboard.worker")

#: How often a running job's uncommitted files are touched: a quarter of gc's grace.
KEEP_FRESH_SECONDS = ORPHAN_GRACE_SECONDS / 4


class JobAssetWriter:
    """What `ctx.open_asset()` yields to a handler: `write()` only; `asset` once stored."""

    def __init__(self, writer: ObjectWriter) -> None:
        self._writer = writer
        self.asset: Asset | None = None

    @property
    def size(self) -> int:
        return self._writer.size

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        await self._writer.write(data)


class JobAssets:
    def __init__(
        self, storage: AssetStorage, store: JobStore, job: Job, now: Callable[[], datetime]
    ) -> None:
        self._storage = storage
        self._store = store
        self._job = job
        self._now = now
        self._pending: list[Asset] = []
        self._writing: set[ObjectWriter] = set()
        self._result: str | None = None
        self._closed = False
        self._fate = "delete"  # -> "stored" | "keep" (left to gc)
        #: Starts a task in the job's nursery (set by the runner): `keep_fresh` runs
        #: from the first file the handler opens.
        self.spawn: Callable[[Callable[[], Awaitable[None]]], None] | None = None
        self._keeping_fresh = False

    # --- the handler's side (through JobContext) ---------------------------------------

    async def save(
        self, filename: str, content_type: str, data: AssetData, *, result: bool = True
    ) -> Asset:
        async with self.open(filename, content_type, result=result) as writer:
            await write_chunks(writer._writer, data)
        assert writer.asset is not None
        return writer.asset

    @asynccontextmanager
    async def open(
        self, filename: str, content_type: str, *, result: bool = True
    ) -> AsyncIterator[JobAssetWriter]:
        if self._closed:
            raise trio.ClosedResourceError(f"job {self._job.id} has finished; it saves no assets")
        job = self._job
        if not self._keeping_fresh and self.spawn is not None:
            self._keeping_fresh = True
            self.spawn(self.keep_fresh)
        async with self._storage.open_writer(
            job.company_id, GENERATED, filename, content_type, now=self._now()
        ) as writer:
            handle = JobAssetWriter(writer)
            self._writing.add(writer)
            try:
                yield handle
            finally:
                self._writing.discard(writer)
        stored = writer.stored
        assert stored is not None
        # Registered with no checkpoint after the rename, so a file is never lost track of.
        asset = stored.as_asset(
            job.company_id,
            source_task_id=job.source_task_id,
            created_by_job_id=job.id,
            created_at=self._now(),
        )
        self._pending.append(asset)
        if result:
            self._result = asset.id
        handle.asset = asset

    async def read(self, asset_id: str) -> bytes:
        if not isinstance(asset_id, str):
            raise InvalidRequest(f"asset id must be a string, not {type(asset_id).__name__}")
        asset = next((a for a in self._pending if a.id == asset_id), None)
        if asset is None:
            asset = await self._store.get_asset(asset_id)
        if asset is None or asset.company_id != self._job.company_id:
            raise AssetNotFound(asset_id)
        # Whole in memory, so bounded: an upload always fits; a big generated asset
        # would hold hundreds of MiB per job.
        limit = self._storage.cap(UPLOADS)
        if asset.byte_size > limit:
            raise InvalidRequest(
                f"asset {asset_id} is {human_bytes(asset.byte_size)}; read_asset reads at "
                f"most {human_bytes(limit)} ({limit} bytes) into memory"
            )
        return await self._storage.read_bytes(asset.object_key)

    # --- the worker's side -------------------------------------------------------------

    @property
    def rows(self) -> list[Asset]:
        """The rows to write with the job's `done` transition."""
        return list(self._pending)

    @property
    def result_asset_id(self) -> str | None:
        return self._result

    def close(self) -> None:
        """The handler has returned: no more saves."""
        self._closed = True

    def stored(self) -> None:
        """The `done` transaction with the rows committed: the files are the store's."""
        self._fate = "stored"

    def keep_for_gc(self) -> None:
        """Whether the rows were committed is unknown: leave the files to gc."""
        self._fate = "keep"

    async def keep_fresh(self) -> None:
        """Touch the uncommitted files every KEEP_FRESH_SECONDS (runs in the job's
        nursery, so it ends with the job)."""
        while True:
            await trio.sleep(KEEP_FRESH_SECONDS)
            await self._storage.keep_young(
                [a.object_key for a in self._pending], list(self._writing)
            )

    async def aclose(self) -> None:
        """Delete the files no row will point at (see the module docstring)."""
        self._closed = True
        pending, self._pending = self._pending, []
        if self._fate == "stored" or not pending:
            return
        if self._fate == "keep":
            log.warning(
                "job %s: %d asset file(s) left for gc (the outcome was not recorded)",
                self._job.id,
                len(pending),
            )
            return
        for asset in pending:
            await self._storage.delete(asset.object_key)
