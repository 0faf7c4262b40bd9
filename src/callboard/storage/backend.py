"""The interface between asset storage and the place its bytes live (a backend).

A backend answers only for what depends on where objects are kept: how the bytes of
one object key land so that they appear whole or not at all, how they are read back,
deleted and found, and how gc lists them. Everything that must come out the same
wherever the bytes go stays above this line, in `writer` (`AssetStorage` and
`ObjectWriter`): the namespaces and their caps, the key layout, the checks of
names and content types, the sha256 and the size, the cap check before each chunk
with its message, and when a failed write is cleaned up (shielded, with a deadline).
So a backend never sees a key that is not of the layout, never decides whether a
chunk is allowed, and cannot make two backends disagree on a hash.

The one thing a backend does on the common layer's behalf is to call `update` (the
object's sha256) with the bytes it writes: it knows where the bytes go off the event
loop, and hashing in that same worker-thread hop measured 10-15% faster than a hop of
its own (2 cores: the two hops serialise anyway and each costs a thread handoff).

`local.LocalDisk` is the backend of a node's storage directory, `s3.S3Backend` that of
a bucket in an S3-compatible object store; `location.open_storage` picks one from a
storage URL.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class Candidate:
    """Something gc may delete: a committed object (`key` is its object key) or the
    remains of a write that never committed (`temporary`; `key` is whatever names it
    in the backend, which gc reports and gives back to `remove`)."""

    key: str
    size: int
    mtime: float  # Unix time of the last write (or touch)
    temporary: bool


class BackendWriter(Protocol):
    """One object being written. `AssetStorage.open_writer` drives it through an
    `ObjectWriter`: `write` any number of times, then `commit` once, or `abort` (once,
    possibly after a `commit` that raised or was cancelled)."""

    async def write(self, data: Buffer) -> None:
        """Append `data` (at most `writer.FLUSH_BYTES`) and pass it, in order, to the
        `update` given to `start_write`, off the event loop."""
        ...

    async def commit(self) -> None:
        """Make the object visible under its key, whole and durable: until this
        returns, a reader or a crash sees no object or the whole of it, never part."""
        ...

    async def abort(self) -> None:
        """Delete what was written, and the object itself if a `commit` began (it may
        have completed). Runs shielded under a deadline, so it must give up promptly
        when cancelled; it logs, rather than raises, what it cannot delete (gc will)."""
        ...

    async def touch(self) -> None:
        """Make what was written so far look young to gc (a write that idles for a
        long time between chunks must not lose its beginning)."""
        ...


class StorageBackend(Protocol):
    """Where the bytes of objects live. Every `key` given is an object key of the
    layout (`names.OBJECT_KEY`), checked above; gc's `remove` gets back candidates
    from `scan`."""

    async def start_write(self, key: str, update: Callable[[Buffer], None]) -> BackendWriter:
        """Begin writing a new object under `key` (keys are never reused). `update` is
        to be called with every byte written, in order, from a worker thread."""
        ...

    def read(
        self, key: str, start: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The object's bytes from `start`, `length` of them (None: to the end), in
        pieces of the backend's choosing; the caller closes it."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def check(self) -> None:
        """Raise StorageUnavailable, saying why, unless objects can be written now (the
        readiness probe asks; the caller bounds how long it waits)."""
        ...

    async def touch(self, keys: Sequence[str]) -> None:
        """Make committed objects look young to gc: a running job's assets wait for
        their rows until the job is done, which may be hours (`JobAssets.keep_fresh`).
        Missing keys are skipped."""
        ...

    def presigned_url(self, key: str, *, filename: str, content_type: str) -> str | None:
        """A short-lived URL a client can download the object from without going
        through the node, or None when the backend has no such thing."""
        ...

    async def delete(self, key: str) -> None:
        """Delete a committed object: no error if it is gone, and like `abort` it gives
        up promptly when cancelled and logs what it cannot delete."""
        ...

    def scan(self, batch: int) -> AsyncGenerator[list[Candidate], None]:
        """Every committed object of the layout and every leftover of an unfinished
        write, in lists of at most `batch`, holding about one list in memory. Nothing
        that is not of the layout: storage pointed at the wrong place must lose
        nothing it does not own. The caller closes it."""
        ...

    async def remove(
        self, candidates: Sequence[Candidate], cutoff: float
    ) -> list[tuple[Candidate, bool]]:
        """Delete each candidate unless it was written (or touched) at or after
        `cutoff` since it was listed; (candidate, deleted?) for each one attempted.
        One already gone is left out; one that could not be deleted is logged."""
        ...
