"""Namespaced asset storage on the local disk (DESIGN.md section 5).

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
file. `collect_garbage` (in `storage_gc`) deletes such orphans once they are older
than ORPHAN_GRACE_SECONDS.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import unicodedata
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from .errors import AssetTooLarge, InvalidRequest

log = logging.getLogger("callboard.storage")

GENERATED = "generated"
UPLOADS = "uploads"
NAMESPACES: tuple[str, ...] = (GENERATED, UPLOADS)

#: Bytes gathered before one write + hash in a worker thread: large enough that the
#: thread hop (~0.1 ms) is noise, small enough to be the whole memory cost of a write.
FLUSH_BYTES = 1 << 20
#: Bytes per read when streaming a file back.
READ_CHUNK = 256 << 10
#: How long a file without a row (or a temporary file) is left alone by gc.
ORPHAN_GRACE_SECONDS = 3600.0
#: How long cleanup of a failed write may take before it is left to gc.
CLEANUP_SECONDS = 5.0

MAX_SAFE_NAME = 100
MAX_ORIGINAL_NAME = 255
MAX_CONTENT_TYPE = 255

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_SAFE_NAME = rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_SAFE_NAME - 1}}}"
OBJECT_NAME = re.compile(rf"{_UUID}-{_SAFE_NAME}")
TEMP_NAME = re.compile(rf"\.{_UUID}-{_SAFE_NAME}\.part")
_OBJECT_KEY = re.compile(
    rf"{_UUID}/(?:{'|'.join(NAMESPACES)})/\d{{4}}/\d{{2}}/\d{{2}}/{_UUID}-{_SAFE_NAME}"
)
_COMPANY = re.compile(_UUID)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DOTTED_RUN = re.compile(r"[._-]*\.[._-]*")
_EXTENSION = re.compile(r"[A-Za-z0-9]{1,16}")
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    r"(?:[ \t]*;[\x20-\x7e]*)?"
)


# --- names -----------------------------------------------------------------------------


def _keep_extension(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, keeping a short extension when it has one."""
    if len(text) <= limit:
        return text
    stem, dot, ext = text.rpartition(".")
    if dot and stem and len(ext) <= 16:
        return stem[: limit - len(ext) - 1] + "." + ext
    return text[:limit]


def safe_filename(name: str) -> str:
    """A name that is safe as one path component on any filesystem: ASCII letters,
    digits and `._-` only, no path separators, no `..`, no leading dot or dash, at most
    MAX_SAFE_NAME characters, a short extension kept. `../../etc/passwd` becomes
    `etc_passwd`, `résumé.pdf` `resume.pdf`, a name with nothing usable `file`."""
    # Accents come off (é -> e) rather than turning the name into underscores.
    text = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    stem, dot, ext = text.rpartition(".")
    if not dot or not _EXTENSION.fullmatch(ext):
        stem, ext = text, ""

    def squash(part: str) -> str:
        part = _UNSAFE.sub("_", part)
        part = _DOTTED_RUN.sub(".", part)  # any run holding a dot is one dot: no ".."
        return re.sub(r"_{2,}", "_", part).strip("._-")

    stem = squash(stem)
    limit = MAX_SAFE_NAME - (len(ext) + 1 if ext else 0)
    stem = stem[:limit].rstrip("._-") or "file"
    return f"{stem}.{ext}" if ext else stem


def clean_original(name: str) -> str:
    """The name as the row keeps it: control characters removed (NUL cannot be stored
    in PostgreSQL text), text that is not valid UTF-8 replaced, at most
    MAX_ORIGINAL_NAME characters (a filesystem's own limit) with its extension kept."""
    text = name.encode("utf-8", "replace").decode("utf-8")
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cc")
    return _keep_extension(text, MAX_ORIGINAL_NAME)


def check_filename(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidRequest(f"filename must be a string, not {type(name).__name__}")
    return name


def check_content_type(value: object) -> str:
    """A media type such as `image/svg+xml` or `text/plain; charset=utf-8`; no control
    characters (it becomes a response header)."""
    if (
        not isinstance(value, str)
        or len(value) > MAX_CONTENT_TYPE
        or not _MEDIA_TYPE.fullmatch(value.strip())
    ):
        raise InvalidRequest(
            f"content type must be a media type such as application/octet-stream, got {value!r}"
        )
    return value.strip()


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


async def _cleanup(fd: int | None, paths: list[Path]) -> None:
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
        await _cleanup(fd, paths)


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
        if not isinstance(object_key, str) or not _OBJECT_KEY.fullmatch(object_key):
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
        if not isinstance(company_id, str) or not _COMPANY.fullmatch(company_id):
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
        await _cleanup(None, [self.path_of(object_key)])

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
