"""Asset storage above the backends: what must come out the same wherever the bytes go.

- `AssetStorage` is storage as callers see it: objects namespaced and capped per
  namespace, keyed by `names.new_object_key`, read, checked and deleted by key. What
  callers give (namespace, content type, filename, company id, object keys) is checked
  here, before any backend sees it, so none can accept what another would refuse.
- `ObjectWriter` streams one object: it checks each chunk against the cap before
  taking it (the message names the cap), counts the size, gathers chunks into
  FLUSH_BYTES buffers for the backend (which hashes them, for the sha256 kept here,
  in the same worker-thread hop as it writes them), and keeps the state that decides
  what a failure leaves behind: a failed or cancelled write leaves nothing under its
  key, deleted shielded within CLEANUP_SECONDS, else by gc.
The backend (`backend.StorageBackend`, e.g. `local.LocalDisk`) only moves bytes.

Storage writes objects only. Callers write the `assets` row after the object is
committed, so a crash between the two leaves an object without a row, never a row
without its object; `collect_garbage` (in `storage.gc`) deletes such orphans once
they are older than ORPHAN_GRACE_SECONDS. See docs/architecture.md, "Storage".
"""

from __future__ import annotations

import errno
import hashlib
import logging
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from contextlib import aclosing, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import trio

from ..errors import AssetTooLarge, InvalidRequest, StorageFull
from ..jobs import Asset, new_id
from .backend import BackendWriter, Buffer, StorageBackend
from .names import (
    NAMESPACES,
    check_content_type,
    check_filename,
    check_object_key,
    clean_original,
    new_object_key,
)

log = logging.getLogger("callboard.storage")

#: Bytes gathered before one write + hash in a worker thread: large enough that the
#: thread hop (~0.1 ms) is noise, small enough to be the whole memory cost of a write.
FLUSH_BYTES = 1 << 20
#: How long cleanup of a failed write may take before it is left to gc.
CLEANUP_SECONDS = 5.0

# --- writing one object ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object written completely and committed under its key."""

    namespace: str
    object_key: str
    byte_size: int
    sha256: str
    content_type: str
    original_filename: str

    def as_asset(
        self,
        company_id: str,
        *,
        source_task_id: str | None,
        created_by_job_id: str | None,
        created_at: datetime,
    ) -> Asset:
        """The record of this object, with a new id: what the caller inserts as its
        `assets` row once the object is in place."""
        return Asset(
            id=new_id(),
            company_id=company_id,
            namespace=self.namespace,
            object_key=self.object_key,
            content_type=self.content_type,
            byte_size=self.byte_size,
            sha256=self.sha256,
            original_filename=self.original_filename,
            source_task_id=source_task_id,
            created_by_job_id=created_by_job_id,
            created_at=created_at,
        )


async def cleanup(what: str, delete: Callable[[], Awaitable[None]]) -> None:
    """Run `delete` (a failed write's abort, or the deletion of an object whose row
    will never be written) shielded from the cancellation that may have caused the
    failure, but within CLEANUP_SECONDS: a hung disk or endpoint must not hang a
    shutdown, so the backend gives up when the deadline cancels it and gc deletes
    what it leaves."""
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + CLEANUP_SECONDS
        await delete()
    if scope.cancelled_caught:
        log.warning("gave up deleting %s after %gs; gc will", what, CLEANUP_SECONDS)


class ObjectWriter:
    """One object being written: made by `AssetStorage.open_writer`, which commits it
    when its block ends normally and aborts it otherwise."""

    def __init__(
        self,
        backend: StorageBackend,
        object_key: str,
        namespace: str,
        cap: int,
        content_type: str,
        original_filename: str,
    ) -> None:
        self.object_key = object_key
        self.namespace = namespace
        self.cap = cap
        self.content_type = content_type
        self.original_filename = original_filename
        self.stored: StoredObject | None = None
        self._backend = backend
        self._sink: BackendWriter | None = None
        self._digest = hashlib.sha256()
        self._buffer = bytearray()
        self._size = 0
        self._state = "new"  # new -> open -> committing -> committed; any -> aborted
        self._aborted_by: BaseException | None = None

    @property
    def size(self) -> int:
        """Bytes accepted so far."""
        return self._size

    async def touch(self) -> None:
        """Keep what was written so far young for gc (`JobAssets.keep_fresh`)."""
        if self._state == "open" and self._sink is not None:
            await self._sink.touch()

    @property
    def temp_path(self) -> Path:
        """The local disk's temporary file (tests look at it); other backends have none
        (AttributeError)."""
        path: Path | None = getattr(self._sink, "temp_path", None)
        if path is None:
            raise AttributeError(f"{type(self._sink).__name__} writes no temporary file")
        return path

    async def open(self) -> None:
        with self._out_of_space():
            self._sink = await self._backend.start_write(self.object_key, self._digest.update)
        self._state = "open"

    async def write(self, data: Buffer) -> None:
        """Take one chunk. Raises AssetTooLarge (having deleted what was written) if it
        would take the object over its namespace's cap."""
        if isinstance(data, str) or not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"asset chunks must be bytes, not {type(data).__name__}")
        if self._state != "open":
            raise trio.ClosedResourceError("this asset writer is closed")
        view = memoryview(data).cast("B")
        if self._size + view.nbytes > self.cap:
            await self.abort()
            self._aborted_by = AssetTooLarge(self.namespace, self.cap)
            raise self._aborted_by
        self._size += view.nbytes
        if view.nbytes >= FLUSH_BYTES:
            # A big chunk goes out as it is, in FLUSH_BYTES slices (each slice a
            # checkpoint), rather than being copied into the buffer.
            await self._flush()
            for start in range(0, view.nbytes, FLUSH_BYTES):
                await self._write_out(view[start : start + FLUSH_BYTES])
            return
        self._buffer += view
        if len(self._buffer) >= FLUSH_BYTES:
            await self._flush()
        else:
            await trio.lowlevel.checkpoint()

    async def _flush(self) -> None:
        if self._buffer:
            buffer, self._buffer = self._buffer, bytearray()
            await self._write_out(buffer)

    async def _write_out(self, data: Buffer) -> None:
        assert self._sink is not None
        with self._out_of_space():
            await self._sink.write(data)

    @contextmanager
    def _out_of_space(self) -> Iterator[None]:
        """A full disk or quota is the storage's state, not a bug: StorageFull, which
        names no path (the message reaches clients)."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise StorageFull(self.namespace) from exc

    async def commit(self) -> StoredObject:
        if self._state != "open" or self._sink is None:
            # A handler that caught AssetTooLarge and left `open_asset` normally: the
            # object is gone, so say why rather than fail obscurely.
            if self._aborted_by is not None:
                raise self._aborted_by
            raise trio.ClosedResourceError(f"this asset writer is {self._state}")
        await self._flush()
        self._state = "committing"
        with self._out_of_space():
            await self._sink.commit()
        # No checkpoint from here to the caller: a cancel cannot slip in between the
        # commit and the caller learning of the object.
        self._state = "committed"
        self.stored = StoredObject(
            namespace=self.namespace,
            object_key=self.object_key,
            byte_size=self._size,
            sha256=self._digest.hexdigest(),
            content_type=self.content_type,
            original_filename=self.original_filename,
        )
        return self.stored

    async def abort(self) -> None:
        """Delete what was written (idempotent; a committed object is the caller's)."""
        state, sink = self._state, self._sink
        if state in ("committed", "aborted"):
            return
        self._state, self._buffer = "aborted", bytearray()
        if state == "new" or sink is None:
            return
        # The sink knows whether a commit began, so whether the object may exist.
        await cleanup(self.object_key, sink.abort)


Chunks = bytes | bytearray | memoryview | Iterable[bytes] | AsyncIterable[bytes]


async def write_chunks(writer: ObjectWriter, chunks: Chunks) -> None:
    """Feed bytes, or a sync or async iterable of bytes, to `writer`. An async iterable
    that has `aclose` (an async generator) is closed however this ends."""
    if isinstance(chunks, bytes | bytearray | memoryview):
        await writer.write(chunks)
    elif isinstance(chunks, str):
        raise TypeError("asset data must be bytes or an iterable of bytes, not str")
    elif isinstance(chunks, AsyncIterable):
        if hasattr(chunks, "aclose"):
            async with aclosing(chunks):  # type: ignore[type-var]
                async for chunk in chunks:
                    await writer.write(chunk)
        else:
            async for chunk in chunks:
                await writer.write(chunk)
    elif isinstance(chunks, Iterable):
        for chunk in chunks:
            await writer.write(chunk)
    else:
        raise TypeError(
            f"asset data must be bytes or an (async) iterable of bytes, not {type(chunks).__name__}"
        )


# --- storage as callers see it ---------------------------------------------------------


class AssetStorage:
    """The objects of every company on one backend, one cap per namespace."""

    def __init__(self, backend: StorageBackend, caps: Mapping[str, int]) -> None:
        if set(caps) != set(NAMESPACES):
            raise ValueError(f"caps must name exactly the namespaces {NAMESPACES}")
        for namespace, cap in caps.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise ValueError(f"the cap of namespace {namespace!r} must be a positive int")
        self.backend = backend
        self._caps = dict(caps)

    def cap(self, namespace: str) -> int:
        try:
            return self._caps[namespace]
        except KeyError:
            raise InvalidRequest(
                f"unknown asset namespace {namespace!r}; use one of {', '.join(NAMESPACES)}"
            ) from None

    @asynccontextmanager
    async def open_writer(
        self,
        company_id: str,
        namespace: str,
        filename: str,
        content_type: str,
        *,
        now: datetime | None = None,
    ) -> AsyncIterator[ObjectWriter]:
        """`async with storage.open_writer(...) as w: await w.write(chunk)`; the object
        is committed when the block ends normally (then `w.stored` describes it) and
        deleted when it raises."""
        cap = self.cap(namespace)
        content_type = check_content_type(content_type)
        filename = check_filename(filename)
        key = new_object_key(company_id, namespace, filename, now or datetime.now(UTC))
        writer = ObjectWriter(
            self.backend, key, namespace, cap, content_type, clean_original(filename)
        )
        await writer.open()
        committed = False
        try:
            yield writer
            await writer.commit()
            committed = True
        finally:
            if not committed:
                await writer.abort()

    async def put(
        self,
        company_id: str,
        namespace: str,
        filename: str,
        content_type: str,
        chunks: Chunks,
        *,
        now: datetime | None = None,
    ) -> StoredObject:
        """Stream `chunks` (bytes, or a sync or async iterable of bytes) into a new object."""
        async with self.open_writer(
            company_id, namespace, filename, content_type, now=now
        ) as writer:
            await write_chunks(writer, chunks)
        assert writer.stored is not None
        return writer.stored

    async def delete(self, object_key: str) -> None:
        """Delete a committed object (no error if it is gone), shielded like a failed
        write's cleanup: callers delete objects whose row will never be written."""
        check_object_key(object_key)
        await cleanup(object_key, lambda: self.backend.delete(object_key))

    async def read_chunks(
        self, object_key: str, start: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """The bytes of an object from `start`, `length` of them (None: to the end), in
        the backend's pieces. An async generator: close it (`aclosing`) if you stop
        early."""
        check_object_key(object_key)
        async with aclosing(self.backend.read(object_key, start, length)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def read_bytes(self, object_key: str) -> bytes:
        async with aclosing(self.read_chunks(object_key)) as chunks:
            return b"".join([chunk async for chunk in chunks])

    async def exists(self, object_key: str) -> bool:
        return await self.backend.exists(check_object_key(object_key))

    async def check(self) -> None:
        """Raise StorageUnavailable unless objects can be written now."""
        await self.backend.check()

    async def keep_young(self, object_keys: Iterable[str], writers: Iterable[ObjectWriter]) -> None:
        """Make committed objects and writes in progress look young to gc."""
        keys = [check_object_key(key) for key in object_keys]
        if keys:
            await self.backend.touch(keys)
        for writer in list(writers):
            await writer.touch()

    def presigned_url(self, object_key: str, *, filename: str, content_type: str) -> str | None:
        """A short-lived download URL that bypasses the node, if the backend has them."""
        return self.backend.presigned_url(
            check_object_key(object_key), filename=filename, content_type=content_type
        )
