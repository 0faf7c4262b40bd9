"""The local-disk backend of asset storage (docs/architecture.md, "Storage").

Layout: `<root>/<company id>/<namespace>/<yyyy>/<mm>/<dd>/<uuid>-<safe name>` (UTC
date); the path under the root is the asset's object key. The random uuid makes every
key new, so nothing is ever overwritten and the sanitised name only has to be safe,
not unique.

Writing (`put`, `open_writer`):
- bytes go to a temporary file beside the final one (`.<uuid>-<safe name>.part`, in
  the same directory so the rename is atomic), gathered into FLUSH_BYTES buffers that
  a worker thread hashes and writes: the event loop never waits on the disk or on
  sha256, and memory stays at about one buffer whatever the size;
- the namespace's cap is checked before each chunk is taken, not after: going over
  deletes the temporary file and raises AssetTooLarge, whose message names the cap;
- when complete, the file is fsynced, renamed into place and its directory fsynced,
  so a crash leaves no file or a whole one, never a half-written file under a final
  name;
- any failure or cancellation deletes the temporary file in a shielded scope with a
  deadline (a hung disk cannot hang a shutdown; gc removes whatever is left).

Storage writes files only. Callers write the `assets` row after the file is in place,
so a crash between the two leaves a file without a row, never a row without its
file. `collect_garbage` (in `storage.gc`) deletes such orphans once they are older
than ORPHAN_GRACE_SECONDS.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import trio

from ..errors import InvalidRequest
from .names import (
    COMPANY_ID,
    NAMESPACES,
    OBJECT_KEY,
    check_content_type,
    check_filename,
    clean_original,
    safe_filename,
)
from .writer import Chunks, ObjectWriter, StoredObject, cleanup, write_chunks

log = logging.getLogger("callboard.storage")

#: Bytes per read when streaming a file back.
READ_CHUNK = 256 << 10


class AssetStorage:
    """Files of every company under one root directory, one cap per namespace."""

    def __init__(self, root: str | os.PathLike[str], caps: Mapping[str, int]) -> None:
        if set(caps) != set(NAMESPACES):
            raise ValueError(f"caps must name exactly the namespaces {NAMESPACES}")
        for namespace, cap in caps.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise ValueError(f"the cap of namespace {namespace!r} must be a positive int")
        self.root = Path(root)
        self._caps = dict(caps)

    def cap(self, namespace: str) -> int:
        try:
            return self._caps[namespace]
        except KeyError:
            raise InvalidRequest(
                f"unknown asset namespace {namespace!r}; use one of {', '.join(NAMESPACES)}"
            ) from None

    def path_of(self, object_key: str) -> Path:
        """The file of an object key; only keys of this layout are accepted, so a key
        can never point outside the root."""
        if not isinstance(object_key, str) or not OBJECT_KEY.fullmatch(object_key):
            raise ValueError(f"not an object key of this storage: {object_key!r}")
        return self.root / object_key

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
        """`async with storage.open_writer(...) as w: await w.write(chunk)`; the file is
        committed when the block ends normally (then `w.stored` describes it) and
        deleted when it raises."""
        cap = self.cap(namespace)
        content_type = check_content_type(content_type)
        filename = check_filename(filename)
        if not isinstance(company_id, str) or not COMPANY_ID.fullmatch(company_id):
            raise InvalidRequest(f"company id must be a uuid, got {company_id!r}")
        when = (now or datetime.now(UTC)).astimezone(UTC)
        name = f"{uuid.uuid4()}-{safe_filename(filename)}"
        key = f"{company_id}/{namespace}/{when:%Y/%m/%d}/{name}"
        writer = ObjectWriter(
            self.root / key, key, namespace, cap, content_type, clean_original(filename)
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
        """Stream `chunks` (bytes, or a sync or async iterable of bytes) into a new file."""
        async with self.open_writer(
            company_id, namespace, filename, content_type, now=now
        ) as writer:
            await write_chunks(writer, chunks)
        assert writer.stored is not None
        return writer.stored

    async def delete(self, object_key: str) -> None:
        """Delete a committed file (no error if it is gone), shielded like a failed
        write's cleanup: callers delete files whose row will never be written."""
        await cleanup(None, [self.path_of(object_key)])

    async def touch(self, paths: Iterable[Path]) -> None:
        """Set the modification time of files to now, so gc sees them as young."""

        def touch_all(paths: list[Path]) -> None:
            for path in paths:
                try:
                    os.utime(path)
                except FileNotFoundError:
                    pass

        await trio.to_thread.run_sync(touch_all, list(paths))

    async def read_chunks(
        self, object_key: str, start: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """The bytes of a file from `start`, `length` of them (None: to the end), in
        READ_CHUNK pieces. An async generator: close it (`aclosing`) if you stop early."""
        path = self.path_of(object_key)
        remaining = length
        async with await trio.open_file(path, "rb") as file:
            if start:
                await file.seek(start)
            while remaining is None or remaining > 0:
                size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                data = await file.read(size)
                if not data:
                    return
                if remaining is not None:
                    remaining -= len(data)
                yield data

    async def read_bytes(self, object_key: str) -> bytes:
        return await trio.Path(self.path_of(object_key)).read_bytes()

    async def exists(self, object_key: str) -> bool:
        return await trio.Path(self.path_of(object_key)).is_file()
