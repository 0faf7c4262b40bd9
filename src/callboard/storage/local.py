"""The local-disk backend of asset storage: `LocalDisk`, and the `AssetStorage` a node
builds on it from its storage directory (docs/architecture.md, "Storage").

An object is the file `<root>/<object key>`. What makes that safe is all here, since
only a disk needs it:
- a write goes to a temporary file beside the final one (`.<uuid>-<safe name>.part`,
  in the same directory so the rename is atomic); each buffer is hashed and written in
  one worker-thread hop, so the event loop never waits on the disk or on sha256;
- commit fsyncs the file, renames it into place and fsyncs its directory, so a crash
  leaves no file or a whole one, never a half-written file under a final name;
- abort deletes the temporary file (and the final one if the rename may have
  happened) in a worker thread that is abandoned when cleanup's deadline passes;
- gc's listing walks only directories of the layout and reads each in batches from an
  open `scandir` iterator, so memory stays flat and a root pointed at the wrong
  directory loses nothing that is not ours.
A write in progress touches its temporary file with every buffer, and `touch` (of a
writer, or of committed objects) lets a running job keep its files young until their
rows are written, so gc's grace keeps off them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import trio

from ..errors import StorageUnavailable
from . import writer
from .backend import Buffer, Candidate
from .names import COMPANY_ID, NAMESPACES, OBJECT_NAME, check_object_key

log = logging.getLogger("callboard.storage")

#: Bytes per read when streaming a file back.
READ_CHUNK = 256 << 10

TEMP_NAME = re.compile(rf"\.{OBJECT_NAME.pattern}\.part")
_NAMESPACE_DIR = re.compile("|".join(NAMESPACES))
_DATE_PARTS = (re.compile(r"\d{4}"), re.compile(r"\d{2}"), re.compile(r"\d{2}"))


# --- writing ---------------------------------------------------------------------------


def _create(temp_path: Path) -> int:
    temp_path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        return os.open(temp_path, flags, 0o666)
    except FileExistsError:
        # A node never writes a key twice; `storage copy` does when it resumes, and
        # finds here what a copy killed mid-write (SIGKILL, power loss) left behind.
        os.unlink(temp_path)
        return os.open(temp_path, flags, 0o666)


def _write_hashed(fd: int, update: Callable[[Buffer], None], data: Buffer) -> None:
    # One thread for both, in order. Hashing in a second thread beside the write
    # measured slower on a 2-core machine (the two compete for cores and memory
    # bandwidth), and double-buffering gained nothing on a real disk.
    update(data)
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


async def _discard_in_thread(fd: int | None, paths: list[Path]) -> None:
    # Abandoned on cancel: cleanup's deadline must be able to walk away from a hung disk.
    await trio.to_thread.run_sync(_discard, fd, paths, abandon_on_cancel=True)


def _touch_all(paths: list[Path]) -> None:
    for path in paths:
        try:
            os.utime(path)
        except FileNotFoundError:
            pass


def _check_writable(root: Path) -> None:
    # The directory is made by the first write: until then, its nearest existing
    # ancestor must let it be made.
    here = root
    while not here.exists() and here.parent != here:
        here = here.parent
    where = f"asset storage {root}" + (f": {here}" if here != root else "")
    if not here.is_dir():
        raise StorageUnavailable(f"{where} is not a directory")
    if not os.access(here, os.W_OK | os.X_OK):
        raise StorageUnavailable(f"{where} is not writable")


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.part")


class LocalWriter:
    """One file being written: the temporary file until commit renames it."""

    def __init__(self, path: Path, fd: int, update: Callable[[Buffer], None]) -> None:
        self.path = path
        self.temp_path = _temp_path(path)
        self._fd: int | None = fd
        self._update = update
        self._committing = False

    async def write(self, data: Buffer) -> None:
        await trio.to_thread.run_sync(_write_hashed, self._fd, self._update, data)

    async def commit(self) -> None:
        fd, self._fd = self._fd, None
        assert fd is not None
        self._committing = True
        await trio.to_thread.run_sync(_finish, fd, self.temp_path, self.path)

    async def touch(self) -> None:
        await trio.to_thread.run_sync(_touch_all, [self.temp_path])

    async def abort(self) -> None:
        fd, self._fd = self._fd, None
        # A commit that failed or was interrupted may have renamed the file already.
        paths = [self.temp_path, self.path] if self._committing else [self.temp_path]
        await _discard_in_thread(fd, paths)


# --- gc's listing ----------------------------------------------------------------------


def _subdirs(path: Path, pattern: re.Pattern[str]) -> list[str]:
    try:
        with os.scandir(path) as entries:
            return sorted(
                e.name
                for e in entries
                if pattern.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
            )
    except FileNotFoundError:
        return []


def _day_dirs(root: Path) -> list[str]:
    """Every `<company>/<namespace>/<yyyy>/<mm>/<dd>` directory (a few per day of use),
    as a path under the root."""
    out = []
    for company in _subdirs(root, COMPANY_ID):
        for namespace in _subdirs(root / company, _NAMESPACE_DIR):
            prefixes = [f"{company}/{namespace}"]
            for pattern in _DATE_PARTS:
                prefixes = [
                    f"{prefix}/{name}"
                    for prefix in prefixes
                    for name in _subdirs(root / prefix, pattern)
                ]
            out.extend(prefixes)
    return out


def _take(entries: Iterator[os.DirEntry[str]], prefix: str, limit: int) -> list[Candidate]:
    """Up to `limit` layout files from an open scandir iterator (fewer: it is done)."""
    found: list[Candidate] = []
    for entry in entries:
        temporary = bool(TEMP_NAME.fullmatch(entry.name))
        if not (temporary or OBJECT_NAME.fullmatch(entry.name)):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # deleted meanwhile (a failed write's cleanup)
        key = f"{prefix}/{entry.name}"
        found.append(Candidate(key, info.st_size, info.st_mtime, temporary))
        if len(found) >= limit:
            break
    return found


def _remove(
    root: Path, candidates: Sequence[Candidate], cutoff: float
) -> list[tuple[Candidate, bool]]:
    out = []
    for item in candidates:
        path = root / item.key
        try:
            # A temporary file still being written is touched by every flush: re-check.
            if os.stat(path, follow_symlinks=False).st_mtime >= cutoff:
                continue
            os.unlink(path)
            out.append((item, True))
        except FileNotFoundError:
            continue
        except OSError:
            log.warning("gc could not delete %s", path, exc_info=True)
            out.append((item, False))
    return out


# --- the backend -----------------------------------------------------------------------


class LocalDisk:
    """Objects as files under one root directory (a `StorageBackend`)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        # One check at a time, so a hung disk does not collect a thread per probe.
        self._checks = trio.CapacityLimiter(1)

    def path_of(self, object_key: str) -> Path:
        """The file of an object key; only keys of the layout are accepted, so a key
        can never point outside the root."""
        return self.root / check_object_key(object_key)

    async def start_write(self, key: str, update: Callable[[Buffer], None]) -> LocalWriter:
        path = self.path_of(key)
        fd = await trio.to_thread.run_sync(_create, _temp_path(path))
        return LocalWriter(path, fd, update)

    async def read(
        self, key: str, start: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        remaining = length
        async with await trio.open_file(self.path_of(key), "rb") as file:
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

    async def exists(self, key: str) -> bool:
        return await trio.Path(self.path_of(key)).is_file()

    async def delete(self, key: str) -> None:
        await _discard_in_thread(None, [self.path_of(key)])

    async def check(self) -> None:
        """The root is a writable directory, or can be made as one."""
        await trio.to_thread.run_sync(
            _check_writable, self.root, abandon_on_cancel=True, limiter=self._checks
        )

    async def touch(self, keys: Sequence[str]) -> None:
        """Set the modification time of objects to now, so gc sees them as young."""
        await trio.to_thread.run_sync(_touch_all, [self.path_of(key) for key in keys])

    def presigned_url(self, key: str, *, filename: str, content_type: str) -> None:
        """The node is the only way to a file on its disk."""
        return None

    async def scan(self, batch: int) -> AsyncGenerator[list[Candidate], None]:
        for prefix in await trio.to_thread.run_sync(_day_dirs, self.root):
            try:
                entries = await trio.to_thread.run_sync(os.scandir, self.root / prefix)
            except FileNotFoundError:
                continue
            try:
                while found := await trio.to_thread.run_sync(_take, entries, prefix, batch):
                    yield found
            finally:
                entries.close()

    async def remove(
        self, candidates: Sequence[Candidate], cutoff: float
    ) -> list[tuple[Candidate, bool]]:
        return await trio.to_thread.run_sync(_remove, self.root, candidates, cutoff)


# --- what callers build ----------------------------------------------------------------


class AssetStorage(writer.AssetStorage):
    """`writer.AssetStorage` on a `LocalDisk` at `root`: what a node builds from its
    storage directory. It adds what only a disk has (`root`, `path_of`, `touch` of
        paths), which the tests and the bench use; code meant for any backend takes
    `writer.AssetStorage`."""

    backend: LocalDisk

    def __init__(self, root: str | os.PathLike[str], caps: Mapping[str, int]) -> None:
        super().__init__(LocalDisk(root), caps)

    @property
    def root(self) -> Path:
        return self.backend.root

    def path_of(self, object_key: str) -> Path:
        return self.backend.path_of(object_key)
