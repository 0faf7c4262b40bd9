"""Streaming writes of one object to the local disk: a temporary file beside the final
one, hashed and flushed in a worker thread, renamed into place when complete."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import AsyncIterable, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import trio

from ..errors import AssetTooLarge
from ..jobs import Asset, new_id

log = logging.getLogger("callboard.storage")

#: Bytes gathered before one write + hash in a worker thread: large enough that the
#: thread hop (~0.1 ms) is noise, small enough to be the whole memory cost of a write.
FLUSH_BYTES = 1 << 20
#: How long cleanup of a failed write may take before it is left to gc.
CLEANUP_SECONDS = 5.0

# --- writing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A file written completely and renamed into place."""

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


def _create(temp_path: Path) -> int:
    temp_path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    return os.open(temp_path, flags, 0o666)


def _write_hashed(fd: int, digest: Any, data: bytes | bytearray | memoryview) -> None:
    # One thread for both, in order. Hashing in a second thread beside the write
    # measured slower on a 2-core machine (the two compete for cores and memory
    # bandwidth), and double-buffering gained nothing on a real disk.
    digest.update(data)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _finish(fd: int, temp_path: Path, path: Path) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp_path, path)
    # The rename is durable only once the directory entry is on disk too.
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _discard(fd: int | None, paths: Iterable[Path]) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            log.warning("could not delete %s; gc will", path, exc_info=True)


async def cleanup(fd: int | None, paths: list[Path]) -> None:
    """Delete a failed write's files, shielded from the cancellation that may have
    caused the failure, but within CLEANUP_SECONDS: the thread is abandoned after that
    (a hung disk must not hang shutdown) and gc deletes what it leaves."""
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + CLEANUP_SECONDS
        await trio.to_thread.run_sync(_discard, fd, paths, abandon_on_cancel=True)
    if scope.cancelled_caught:
        log.warning("gave up deleting %s after %gs; gc will", paths, CLEANUP_SECONDS)


class ObjectWriter:
    """One file being written: made by `AssetStorage.open_writer`, which commits it when
    its block ends normally and aborts it otherwise."""

    def __init__(
        self,
        path: Path,
        object_key: str,
        namespace: str,
        cap: int,
        content_type: str,
        original_filename: str,
    ) -> None:
        self.path = path
        self.temp_path = path.with_name(f".{path.name}.part")
        self.object_key = object_key
        self.namespace = namespace
        self.cap = cap
        self.content_type = content_type
        self.original_filename = original_filename
        self.stored: StoredObject | None = None
        self._digest = hashlib.sha256()
        self._buffer = bytearray()
        self._fd: int | None = None
        self._size = 0
        self._state = "new"  # new -> open -> committing -> committed; any -> aborted
        self._aborted_by: BaseException | None = None

    @property
    def size(self) -> int:
        """Bytes accepted so far."""
        return self._size

    async def open(self) -> None:
        self._fd = await trio.to_thread.run_sync(_create, self.temp_path)
        self._state = "open"

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Take one chunk. Raises AssetTooLarge (having deleted the file) if it would
        take the file over its namespace's cap."""
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

    async def _write_out(self, data: bytes | bytearray | memoryview) -> None:
        await trio.to_thread.run_sync(_write_hashed, self._fd, self._digest, data)

    async def commit(self) -> StoredObject:
        if self._state != "open" or self._fd is None:
            # A handler that caught AssetTooLarge and left `open_asset` normally: the
            # file is gone, so say why rather than fail obscurely.
            if self._aborted_by is not None:
                raise self._aborted_by
            raise trio.ClosedResourceError(f"this asset writer is {self._state}")
        await self._flush()
        fd, self._fd = self._fd, None
        self._state = "committing"
        await trio.to_thread.run_sync(_finish, fd, self.temp_path, self.path)
        # No checkpoint from here to the caller: a cancel cannot slip in between the
        # rename and the caller learning of the file.
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
        """Delete what was written (idempotent; a committed file is the caller's)."""
        state, fd = self._state, self._fd
        if state in ("committed", "aborted"):
            return
        self._state, self._fd, self._buffer = "aborted", None, bytearray()
        if state == "new":
            return
        # Committing failed or was interrupted: the rename may have happened.
        paths = [self.temp_path, self.path] if state == "committing" else [self.temp_path]
        await cleanup(fd, paths)


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


# --- the store of files ----------------------------------------------------------------
