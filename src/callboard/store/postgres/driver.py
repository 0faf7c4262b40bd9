"""asyncpg driven from trio through trio-asyncio: the PostgreSQL store's one contact
with its driver, so the driver can be swapped without touching the store.

- `PgDriver.running()` opens a trio-asyncio loop for the store's lifetime; every
  call crosses into it with `loop.run_aio_coroutine()` (explicitly, not through a
  context variable, so any trio task may call, whoever opened the loop).
- A small pool of its own: a semaphore over the slots, idle connections taken most
  recently used first, filled lazily; a slot whose connection died is reconnected
  on its next use. asyncpg's pool is not used: its reset query on every release is
  one more round trip. A connection in doubt (a cancelled read, a lost or confused
  connection) is dropped, never reused: asyncpg refuses a new statement while a
  cancelled one is still winding down on it.
- Writes are shielded from trio cancellation once sent: a cancel inside a
  transaction would also cancel its ROLLBACK and leave the connection aborted
  (docs/architecture.md, "Stack notes"), and the store's callers must learn whether
  a write committed.
  asyncpg's per-statement timeout bounds them instead.
- Errors: integrity violations pass through for the store to map to domain errors;
  a value the server cannot store (NUL in text) is `InvalidRequest`; everything
  else (connection refused or lost, timeouts, server errors) becomes
  `StoreUnavailable` at once: callers fail fast during an outage. A deadlock or
  serialization failure (the statement rolled back whole) is retried a few times,
  and so are reads, and writes refused before they were sent, that found their
  connection gone.
- `listen()` keeps one dedicated connection LISTENing, reconnects with backoff
  when it is lost, and says so, so the caller can catch up on what it missed.
"""

from __future__ import annotations

# trio_asyncio patches asyncio's loop lookup: import it before asyncpg
# (docs/architecture.md, "Stack notes").
import trio_asyncio  # isort: skip

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import trio

from ...config import redact_url
from ...errors import InvalidRequest, StoreUnavailable
from ..base import Reachability

log = logging.getLogger("callboard.store")

T = TypeVar("T")

#: Statement rolled back whole by the server: safe to run again.
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
_RETRIES = 3

#: Every statement callboard runs is short; JIT compiling one costs tens of
#: milliseconds. The fair claim's row guesses (a LIMIT per company the planner
#: cannot see) once put its cost past jit_above_cost, and each claim then spent
#: about 50 ms compiling: two nodes lost a third of their throughput.
_SERVER_SETTINGS = {"application_name": "callboard", "jit": "off"}

IntegrityError = asyncpg.exceptions.IntegrityConstraintViolationError
#: What a lost, refused or confused connection raises.
_DRIVER_ERRORS = (
    TimeoutError,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)
UniqueViolation = asyncpg.exceptions.UniqueViolationError
ForeignKeyViolation = asyncpg.exceptions.ForeignKeyViolationError


class PgDriver:
    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        connect_timeout: float = 5.0,
        statement_timeout: float = 30.0,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.dsn = dsn
        self.pool_size = pool_size
        #: Reports an outage once, and the recovery once.
        self.reachability = Reachability(f"PostgreSQL at {redact_url(dsn)}")
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self._loop: trio_asyncio.TrioEventLoop | None = None
        # Idle connections, most recently used last: taking the hottest one keeps one
        # warm server backend doing the work at low load (round-robin over ten cost
        # about half a millisecond a statement). The semaphore bounds the pool.
        self._idle: list[asyncpg.Connection] = []
        self._slots = trio.Semaphore(pool_size)
        self._connections: set[asyncpg.Connection] = set()
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[PgDriver]:
        async with trio_asyncio.open_loop() as loop:
            self._loop = loop
            try:
                yield self
            finally:
                self._closed = True
                with trio.CancelScope(shield=True):
                    await self._close_all()
                self._loop = None

    async def _close_all(self) -> None:
        self._idle.clear()
        connections, self._connections = self._connections, set()
        with trio.move_on_after(5):
            for conn in connections:
                await self._close(conn)

    async def _close(self, conn: asyncpg.Connection) -> None:
        self._connections.discard(conn)
        if conn.is_closed():
            return
        try:
            await self._aio(conn.close(timeout=2))
        except _DRIVER_ERRORS:
            conn.terminate()

    def _require_loop(self) -> trio_asyncio.TrioEventLoop:
        if self._loop is None or self._closed:
            raise StoreUnavailable("the PostgreSQL store is not open")
        return self._loop

    async def _aio(self, coro: Awaitable[T]) -> T:
        loop = self._loop
        if loop is None:
            coro.close()  # type: ignore[attr-defined]
            raise StoreUnavailable("the PostgreSQL store is not open")
        return await loop.run_aio_coroutine(coro)

    async def connect(self, *, statement_timeout: float | None = -1.0) -> asyncpg.Connection:
        """A new connection outside the pool (the listener, migrations); migrations
        pass `statement_timeout=None`: they may wait for another node's."""
        try:
            conn = await self._aio(
                asyncpg.connect(
                    self.dsn,
                    timeout=self.connect_timeout,
                    command_timeout=(
                        self.statement_timeout if statement_timeout == -1.0 else statement_timeout
                    ),
                    server_settings=_SERVER_SETTINGS,
                )
            )
        except _DRIVER_ERRORS as exc:
            self.reachability.lost(exc)
            raise StoreUnavailable(f"cannot connect to {redact_url(self.dsn)}: {exc}") from exc
        self._connections.add(conn)
        return conn

    # --- the pool ----------------------------------------------------------------------

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[list[asyncpg.Connection | None]]:
        self._require_loop()
        async with self._slots:
            if self._closed:
                raise StoreUnavailable("the PostgreSQL store is closed")
            holder: list[asyncpg.Connection | None] = [self._idle.pop() if self._idle else None]
            try:
                yield holder
            finally:
                kept = holder[0]
                if kept is not None:
                    if kept.is_closed() or self._closed:
                        self._connections.discard(kept)
                        kept.terminate()
                    else:
                        self._idle.append(kept)

    async def _checked_out(self, holder: list[asyncpg.Connection | None]) -> asyncpg.Connection:
        conn = holder[0]
        if conn is None or conn.is_closed():
            if conn is not None:
                self._connections.discard(conn)
            holder[0] = None
            conn = holder[0] = await self.connect()
        return conn

    async def run(
        self,
        fn: Callable[[asyncpg.Connection], Awaitable[T]],
        *,
        write: bool,
        transaction: bool = False,
    ) -> T:
        """Run the asyncio coroutine function `fn(conn)` on a pooled connection, in a
        transaction when asked. A write is shielded once it starts."""
        for attempt in range(_RETRIES):
            async with self._slot() as holder:
                conn = await self._checked_out(holder)
                try:
                    if write:
                        with trio.CancelScope(shield=True):
                            result = await self._aio(_call(conn, fn, transaction))
                    else:
                        result = await self._aio(_call(conn, fn, transaction))
                    if write:
                        # Only a write says the database is back (a read-only server
                        # after a failover still answers reads).
                        self.reachability.reached()
                    return result
                except _RETRYABLE:
                    if attempt + 1 == _RETRIES:
                        raise StoreUnavailable(
                            "PostgreSQL kept aborting the transaction (deadlock or serialization)"
                        ) from None
                    continue
                except IntegrityError:
                    raise
                except asyncpg.exceptions.DataError as exc:
                    # A value PostgreSQL cannot store (a NUL character in text, a
                    # number out of range): the caller's input, not an outage.
                    raise InvalidRequest(f"the database refused a value: {exc}") from exc
                except asyncpg.PostgresError as exc:
                    if not conn.is_closed():
                        # The server refused the statement; the connection is fine. A
                        # refused write (a read-only server, a full disk) is an outage.
                        if write:
                            self.reachability.lost(exc)
                        raise StoreUnavailable(f"PostgreSQL: {exc}") from exc
                    holder[0] = None
                    self._connections.discard(conn)
                    if not write and attempt + 1 < _RETRIES:
                        continue  # a read may run again on a fresh connection
                    self.reachability.lost(exc)
                    raise StoreUnavailable(f"PostgreSQL: {exc}") from exc
                except BaseException as exc:
                    # Cancelled mid-read, lost mid-write, or confused: a connection in
                    # doubt is never reused (asyncpg refuses a new statement while a
                    # cancelled one is still winding down on it).
                    holder[0] = None
                    self._connections.discard(conn)
                    conn.terminate()
                    if not isinstance(exc, _DRIVER_ERRORS):
                        raise
                    # A read may run again, and so may a write refused before it was
                    # sent (the server dropped the idle connection, e.g. on
                    # pg_terminate_backend).
                    unsent = type(exc) is asyncpg.InterfaceError
                    if (unsent or not write) and attempt + 1 < _RETRIES:
                        continue
                    self.reachability.lost(exc)
                    if isinstance(exc, TimeoutError):
                        raise StoreUnavailable("PostgreSQL did not answer in time") from exc
                    raise StoreUnavailable(f"PostgreSQL: {exc}") from exc
        raise AssertionError("unreachable")

    async def run_on(
        self, conn: asyncpg.Connection, fn: Callable[[asyncpg.Connection], Awaitable[T]]
    ) -> T:
        """Run `fn(conn)` on a connection from `connect()` (shielded, like a write)."""
        try:
            with trio.CancelScope(shield=True):
                return await self._aio(fn(conn))
        except IntegrityError:
            raise
        except _DRIVER_ERRORS as exc:
            raise StoreUnavailable(f"PostgreSQL: {exc}") from exc

    async def release(self, conn: asyncpg.Connection) -> None:
        """Close a connection from `connect()`."""
        await self._close(conn)

    async def execute(self, sql: str, *args: Any, write: bool = False) -> str:
        return await self.run(lambda conn: conn.execute(sql, *args), write=write)

    async def fetch(self, sql: str, *args: Any, write: bool = False) -> list[asyncpg.Record]:
        return await self.run(lambda conn: conn.fetch(sql, *args), write=write)

    async def fetchrow(self, sql: str, *args: Any, write: bool = False) -> asyncpg.Record | None:
        return await self.run(lambda conn: conn.fetchrow(sql, *args), write=write)

    async def fetchval(self, sql: str, *args: Any, write: bool = False) -> Any:
        return await self.run(lambda conn: conn.fetchval(sql, *args), write=write)

    # --- LISTEN ------------------------------------------------------------------------

    async def listen(
        self,
        channels: Mapping[str, Callable[[str], None]],
        on_connected: Callable[[], None],
        *,
        not_from_self: frozenset[str] = frozenset(),
        health_interval: float = 5.0,
        max_backoff: float = 5.0,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Forward notifications on `channels` to their callbacks (in the trio thread)
        until cancelled. `on_connected()` runs after every (re)connection, once the
        channels are listened to: anything sent before then may have been missed.
        Notifications on the `not_from_self` channels sent by this driver's own
        connections are dropped (the caller knows of those already)."""
        backoff = 0.05
        started = False
        while True:
            lost = trio.Event()
            try:
                conn = await self.connect()
            except StoreUnavailable as exc:
                if not started:
                    raise
                log.debug("PostgreSQL listener: %s; retrying in %.1fs", exc, backoff)
                await trio.sleep(backoff)
                backoff = min(max_backoff, backoff * 2)
                continue
            try:

                def forward(
                    _conn: object, pid: int, channel: str, payload: str
                ) -> None:  # asyncpg's listener signature
                    if channel in not_from_self and self._own_backend(pid):
                        return
                    channels[channel](payload)

                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                for channel in channels:
                    await self._aio(conn.add_listener(channel, forward))
                backoff = 0.05
                self.reachability.reached()
                on_connected()
                if not started:
                    started = True
                    task_status.started()
                # Wait for the connection to drop; a ping now and then notices a
                # silent network loss, which no termination callback reports.
                while True:
                    with trio.move_on_after(health_interval):
                        await lost.wait()
                    if lost.is_set():
                        break
                    with trio.move_on_after(health_interval) as ping:
                        await self._aio(conn.fetchval("SELECT 1"))
                    if ping.cancelled_caught:
                        break
            except _DRIVER_ERRORS as exc:
                self.reachability.lost(exc)
            finally:
                conn.terminate()
                self._connections.discard(conn)
            if not started:
                raise StoreUnavailable("the PostgreSQL listener could not start")
            log.debug("PostgreSQL listener reconnecting in %.1fs", backoff)
            await trio.sleep(backoff)
            backoff = min(max_backoff, backoff * 2)

    def _own_backend(self, pid: int) -> bool:
        return any(conn.get_server_pid() == pid for conn in self._connections)


async def _call(
    conn: asyncpg.Connection, fn: Callable[[asyncpg.Connection], Awaitable[T]], transaction: bool
) -> T:
    if transaction:
        async with conn.transaction():
            return await fn(conn)
    return await fn(conn)
