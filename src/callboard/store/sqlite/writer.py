"""The one thread that writes to an SQLite database, batching writes into transactions.

Why one thread: SQLite allows one writer at a time, a connection belongs to the thread
that uses it (docs/architecture.md, "Stack notes"), and a commit is the expensive part
of a write (an fsync with synchronous=FULL, a WAL append with NORMAL). So the writer takes whatever
requests are waiting, up to `max_batch`, runs them in ONE transaction, each inside its
own SAVEPOINT so a failing request rolls back alone and gets its own exception, and
commits once for all of them.

The trio side:
- `submit()` waits for a queue slot with a trio.Semaphore (never blocking the trio
  thread on the bounded `queue.Queue`), then waits for the answer in a SHIELDED scope:
  once a request is queued it will run, and its caller must learn the outcome, because
  it publishes the events its write committed. A cancel arriving meanwhile takes effect
  at the caller's next checkpoint, after it got its result.
- The writer answers through `TrioToken.run_sync_soon`, which never blocks, once per
  batch and only after the commit.
- `stop()` queues a sentinel behind the requests already queued, which all run, and
  joins the thread. If the thread dies, every waiting caller gets StoreUnavailable.

WAL checkpoints are the other expensive part: with synchronous=NORMAL a checkpoint
fsyncs the WAL and the database file, and SQLite runs it inside the COMMIT that
pushes the WAL past `wal_autocheckpoint` pages, stalling every writer behind it for
10-30 ms. `Checkpointer` runs them on its own thread and connection instead (a PASSIVE
checkpoint never blocks the writer); the writer keeps a higher auto-checkpoint
threshold only as a backstop should the checkpointer fall behind or die.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from ...errors import StoreUnavailable

WriteFn = Callable[[sqlite3.Connection], Any]

log = logging.getLogger("callboard.store.sqlite")

_STOP = object()


@dataclass(frozen=True, slots=True)
class WriterStatistics:
    requests: int  # write requests answered (committed or failed)
    commits: int  # transactions committed
    batches: int  # transactions attempted
    largest_batch: int  # most requests in one transaction
    queued: int  # requests waiting for the writer now


class _Request:
    __slots__ = ("done", "error", "fn", "holds_slot", "outbox", "value")

    def __init__(self, fn: WriteFn, *, holds_slot: bool) -> None:
        self.fn = fn
        self.holds_slot = holds_slot
        self.done = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.outbox: list[Any] = []


_running = threading.local()


def outbox() -> list[Any]:
    """The committed-events list of the request the writer thread is running now.
    The store appends each event it writes; the writer hands them to `on_commit` in
    commit order once the transaction has committed (and drops them if it did not)."""
    return _running.request.outbox


class Writer:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        setup: WriteFn,
        *,
        max_batch: int = 64,
        max_queued: int = 256,
        name: str = "callboard-sqlite-writer",
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._setup = setup
        self._after_commit = after_commit
        self._max_batch = max_batch
        self._slots = trio.Semaphore(max_queued)
        # One extra place for the stop sentinel, so stop() never waits for a slot.
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queued + 1)
        self._name = name
        self._lock = threading.Lock()  # guards _state against the thread's shutdown
        self._state = "new"  # new -> running -> stopping -> dead
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._requests = self._commits = self._batches = self._largest = 0
        #: Called in the trio thread with each commit's events, in commit order, before
        #: any caller of that commit resumes: publishing from here keeps live order
        #: equal to event-id order, whatever order the callers wake in.
        self.on_commit: Callable[[list[Any]], None] | None = None

    def statistics(self) -> WriterStatistics:
        return WriterStatistics(
            requests=self._requests,
            commits=self._commits,
            batches=self._batches,
            largest_batch=self._largest,
            queued=self._queue.qsize(),
        )

    @property
    def alive(self) -> bool:
        return self._state == "running"

    async def start(self) -> Any:
        """Start the thread; it connects and runs `setup` (migrations) before any
        request. Returns what `setup` returned, or raises what it raised."""
        self._token = trio.lowlevel.current_trio_token()
        startup = _Request(self._setup, holds_slot=False)
        self._state = "running"
        self._thread = threading.Thread(target=self._main, args=(startup,), name=self._name)
        self._thread.daemon = True  # a crashed trio run must not hang interpreter exit
        self._thread.start()
        return await self._answer_of(startup)

    async def submit(self, fn: WriteFn) -> Any:
        """Run `fn(conn)` in the writer's next transaction; its result or exception."""
        await self._slots.acquire()
        request = _Request(fn, holds_slot=True)
        with self._lock:
            if self._state != "running":
                self._slots.release()
                raise StoreUnavailable("the SQLite store is closed")
            self._queue.put_nowait(request)
        return await self._answer_of(request)

    async def stop(self) -> None:
        with self._lock:
            if self._state == "running":
                self._state = "stopping"
                self._queue.put_nowait(_STOP)
        if self._thread is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._thread.join)

    @staticmethod
    async def _answer_of(request: _Request) -> Any:
        with trio.CancelScope(shield=True):
            await request.done.wait()
        if request.error is not None:
            raise request.error
        return request.value

    # --- the trio side of answering ----------------------------------------------------

    def _deliver(self, batch: list[_Request]) -> None:
        if self.on_commit is not None:
            events = [event for request in batch for event in request.outbox]
            if events:
                self.on_commit(events)
        for request in batch:
            request.done.set()
            if request.holds_slot:
                self._slots.release()

    def _answer(self, batch: list[_Request]) -> None:
        assert self._token is not None
        try:
            self._token.run_sync_soon(self._deliver, batch)
        except trio.RunFinishedError:
            pass  # nobody is left to answer

    # --- the writer thread -------------------------------------------------------------

    def _main(self, startup: _Request) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            startup.value = self._setup(conn)
        except BaseException as exc:
            startup.error = exc
            self._answer([startup])
            self._shut_down(conn)
            return
        self._answer([startup])
        try:
            self._loop(conn)
        finally:
            self._shut_down(conn)

    def _loop(self, conn: sqlite3.Connection) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._run_batch(conn, batch)
            if stop:
                return

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Request]) -> None:
        self._batches += 1
        self._largest = max(self._largest, len(batch))
        try:
            conn.execute("BEGIN IMMEDIATE")
            for request in batch:
                self._run_one(conn, request)
            conn.execute("COMMIT")
            self._commits += 1
            if self._after_commit is not None:
                self._after_commit()
        except BaseException as exc:
            # The transaction as a whole failed (BEGIN, a savepoint or COMMIT): nothing
            # of the batch was committed, so every request gets the error.
            _rollback(conn)
            for request in batch:
                request.value, request.error = None, exc
                request.outbox.clear()
            self._requests += len(batch)
            self._answer(batch)
            if not isinstance(exc, Exception):
                raise
            return
        self._requests += len(batch)
        self._answer(batch)

    @staticmethod
    def _run_one(conn: sqlite3.Connection, request: _Request) -> None:
        conn.execute("SAVEPOINT request")
        _running.request = request
        try:
            request.value = request.fn(conn)
        except Exception as exc:
            request.error = exc
            request.outbox.clear()
            conn.execute("ROLLBACK TO request")
        finally:
            _running.request = None
        conn.execute("RELEASE request")

    def _shut_down(self, conn: sqlite3.Connection | None) -> None:
        with self._lock:
            self._state = "dead"
            pending = []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    pending.append(item)
        if pending:
            for request in pending:
                request.error = StoreUnavailable("the SQLite writer stopped")
            self._answer(pending)
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # the connection is beyond help; the next BEGIN will say so


class Checkpointer:
    """Runs `checkpoint` (a PASSIVE WAL checkpoint) on its own thread and connection,
    at most once per `interval` seconds and only after commits (`poke()`, from the
    writer thread, after each one). A PASSIVE checkpoint copies what it can without
    waiting for or blocking the writer and readers. Durability is unchanged: the WAL
    is fsynced by checkpoints, whichever connection runs them."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        checkpoint: str,
        *,
        interval: float = 0.2,
        name: str = "callboard-sqlite-checkpointer",
    ) -> None:
        self._connect = connect
        self._checkpoint = checkpoint
        self._interval = interval
        self._name = name
        self._poked = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=self._name)
        self._thread.daemon = True
        self._thread.start()

    def poke(self) -> None:
        self._poked.set()

    def stop(self) -> None:
        """Blocking: stop the thread (after a last checkpoint if one was due) and join it."""
        self._stopping.set()
        self._poked.set()
        if self._thread is not None:
            self._thread.join()

    def _main(self) -> None:
        try:
            conn = self._connect()
        except sqlite3.Error:
            log.warning("no checkpointer; the writer checkpoints the WAL itself", exc_info=True)
            return
        try:
            while True:
                self._poked.wait()
                if self._stopping.is_set():
                    return  # closing the last connection checkpoints anyway
                # Let commits gather: one checkpoint (two fsyncs) per interval under load.
                self._stopping.wait(self._interval)
                self._poked.clear()
                # stop() sets _stopping before _poked: either seen here, or the next
                # wait() returns at once.
                if self._stopping.is_set():
                    return
                try:
                    conn.execute(self._checkpoint).fetchall()
                    self.checkpoints += 1
                except sqlite3.Error:
                    log.warning("WAL checkpoint failed; the writer's own will do", exc_info=True)
        finally:
            conn.close()
