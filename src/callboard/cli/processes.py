"""`callboard serve --processes N`: N nodes on one machine behind one listening port,
started and stopped as one.

A node is one trio run, so it uses one core; N processes use N. Each child is a full
node (API, dispatcher, workers, reaper) sharing the queue through PostgreSQL exactly as
nodes on separate machines do. The embedded SQLite store has one writer per file, so
`serve` refuses more than one process on it (exit 2) before this module is reached.

How it works, and why:

- The port. The parent binds and the children serve. On Linux the parent opens one
  socket per child, all with SO_REUSEPORT on the same address, and the kernel spreads
  new connections over them by a hash of the client's address and port (one socket
  shared by all would let whichever child is first at `accept` take a burst of
  connections). Elsewhere one socket is shared by every child. Binding in the parent
  makes `--bind HOST:0` work (the first socket gets a free port, the others bind that
  same port), turns "address in use" into one line from the parent before any child
  starts (a plain bind is tried first, so another server already on the port is not
  silently joined through SO_REUSEPORT), and keeps a child's socket, with the
  connections waiting in its queue, open while that child is restarted. A child gets
  its socket as an inherited descriptor and serves it through Hypercorn's `fd://N`.
- The children. Each is a fresh interpreter (`python -m callboard serve`) started by
  subprocess (fork and exec at once, no Python code between): a process running trio
  is never forked. Its settings arrive as CALLBOARD_* variables written from the
  parent's resolved settings, so every child runs exactly what the parent was asked;
  its name (p1..pN) and descriptors arrive in CALLBOARD_CHILD_PROCESS. A child is a
  node of its own: its node id (host:pid:random) differs from its siblings', it has
  its own `database_pool_size` connections, and its log lines carry [p1]..[pN] (the
  parent's carry [main]). `--log-events` and `--demo` go to p1 only (on PostgreSQL
  every node sees every event; the demo jobs are submitted once).
- Start-up. p1 starts alone and the others once it is ready, so the migrations and the
  operator token are made once, by p1 (the later children find both in place). A child
  is ready when its API is bound: it writes one byte to a pipe from the parent. A child
  that exits before that on its first start fails the command: the others are stopped,
  the child's own message (one line for a bad setting or an unreachable database) says
  why, and the parent exits with the child's exit code (1 if it died of a signal).
- A child that dies later is started again, as gunicorn's and uvicorn's managers do,
  because an operator expects the group to heal rather than shrink or stop: after 1 s,
  doubling with every exit that comes less than a minute after the child's start,
  capped at 30 s; a child that had run a minute waits 1 s again. The jobs it held are
  requeued by a reaper when their leases expire, as after any crash.
- Stopping. The children run in their own process groups, so a Ctrl-C at the terminal
  reaches the parent alone, as a SIGTERM to the parent does. Either makes the parent
  send one SIGTERM to each child, which drains as a single `serve` does (running jobs
  get `shutdown_grace`, the web server its last responses). The parent waits up to that
  grace plus 15 s, SIGKILLs what is left, and exits 0 when every child stopped cleanly,
  1 otherwise. A second Ctrl-C or SIGTERM SIGKILLs the children at once and exits 130.
  If the parent dies without stopping them (SIGKILL), each child sees the parent's end
  of another pipe close and drains itself: no orphan keeps serving.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ..config import _FIELDS, LISTEN_BACKLOG, SettingError, Settings
from .common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK

log = logging.getLogger("callboard.processes")

CHILD_ENV = "CALLBOARD_CHILD_PROCESS"
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
#: A child that ran this long before it died is restarted after FIRST_BACKOFF again.
STEADY_SECONDS = 60.0
#: Beyond `shutdown_grace`: the web server's own graceful close, and start-up time.
STOP_MARGIN = 15.0

#: (child index, first start of that child) -> the child's command line.
Command = Callable[[int, bool], list[str]]


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """What a child of `serve --processes` is given by its parent."""

    name: str
    listen_fd: int
    ready_fd: int
    lifeline_fd: int

    def encode(self) -> str:
        return f"{self.name} {self.listen_fd} {self.ready_fd} {self.lifeline_fd}"

    @classmethod
    def from_environment(cls) -> ChildInfo | None:
        raw = os.environ.get(CHILD_ENV, "").split()
        if len(raw) != 4 or not all(part.isdigit() for part in raw[1:]):
            return None
        return cls(raw[0], int(raw[1]), int(raw[2]), int(raw[3]))

    def report_ready(self) -> None:
        """Tell the parent this child's API is bound; called once."""
        try:
            os.write(self.ready_fd, b"r")
        except OSError:
            pass  # the parent is gone: the lifeline tells the node to stop
        finally:
            os.close(self.ready_fd)

    async def wait_for_parent_exit(self) -> None:
        """Return when the parent's end of the lifeline closes (it never writes)."""
        async with trio.lowlevel.FdStream(self.lifeline_fd) as lifeline:
            while await lifeline.receive_some():
                pass


def settings_environment(settings: Settings) -> dict[str, str]:
    """The settings as the CALLBOARD_* variables that make a child load the same ones."""
    env: dict[str, str] = {}
    for name, (var, _parse) in _FIELDS.items():
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, bool):
            env[var] = "true" if value else "false"
        elif isinstance(value, tuple):
            env[var] = ",".join(value)
        else:
            env[var] = str(value)
    env["CALLBOARD_PROCESSES"] = "1"
    return env


def open_listeners(bind: str, count: int) -> list[socket.socket]:
    """Listening sockets on `bind` for `count` children: one each with SO_REUSEPORT on
    Linux, else one shared. Raises SettingError (one line) when the address is taken."""
    host, _, port = bind.rpartition(":")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise SettingError(f"bind {bind}: {exc.strerror}") from None
    reuse_port = count > 1 and sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
    sockets: list[socket.socket] = []
    try:
        if reuse_port and address[1] != 0:
            # A plain bind fails where anyone listens; SO_REUSEPORT alone would join a
            # group another server of this user already listens with.
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        for _ in range(count if reuse_port else 1):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            address = sock.getsockname()  # port 0: the others take the port this one got
            sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise SettingError(f"bind {bind}: cannot listen there: {exc.strerror or exc}") from None
    return sockets


def _describe(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


@dataclass
class _Slot:
    index: int
    sock: socket.socket
    proc: trio.Process | None = None
    lifeline: int | None = None
    starts: int = 0

    @property
    def name(self) -> str:
        return f"p{self.index + 1}"

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)


class ProcessGroup:
    """The parent: starts the children, restarts the ones that die, stops them all."""

    def __init__(self, settings: Settings, command: Command) -> None:
        self._settings = settings
        self._command = command
        self._env = {**os.environ, **settings_environment(settings)}
        self._stopping = trio.Event()
        self._failed_start: int | None = None
        self._unclean: list[str] = []
        self._interrupted = False
        self._listeners: list[socket.socket] = []
        self._slots: list[_Slot] = []
        self._ready = 0
        self._address = ""
        self._nursery: trio.Nursery | None = None

    async def run(self) -> int:
        count = self._settings.processes
        self._listeners = open_listeners(self._settings.bind, count)
        host, port = self._listeners[0].getsockname()[:2]
        self._address = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._slots = [_Slot(i, self._listeners[i % len(self._listeners)]) for i in range(count)]
        log.info(
            "starting %d processes on one port; each a node with up to %d PostgreSQL "
            "connections (%d in all)",
            count,
            self._settings.database_pool_size,
            count * self._settings.database_pool_size,
        )
        try:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._watch_signals, signals)
                    async with trio.open_nursery() as slots:
                        # p1 first: it migrates and makes the operator token, once.
                        await slots.start(self._keep, self._slots[0])
                        for slot in self._slots[1:]:
                            if not self._stopping.is_set():
                                slots.start_soon(self._keep, slot)
                    nursery.cancel_scope.cancel()
        finally:
            self._close_listeners()
        return self._exit_code()

    def _exit_code(self) -> int:
        if self._interrupted:
            return EXIT_INTERRUPTED
        if self._failed_start is not None:
            return self._failed_start if self._failed_start > 0 else EXIT_FAILED
        if self._unclean:
            log.error("stopped; not cleanly: %s", ", ".join(self._unclean))
            return EXIT_FAILED
        log.info("all %d processes stopped", len(self._slots))
        return EXIT_OK

    async def _keep(
        self, slot: _Slot, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run one child, and run it again whenever it dies, until the group stops."""
        failures = 0
        while not self._stopping.is_set():
            started_at = trio.current_time()
            ready = await self._start(slot)
            if ready:
                task_status.started()
                task_status = trio.TASK_STATUS_IGNORED
                if slot.starts == 1:
                    self._note_ready()
            assert slot.proc is not None
            code = await slot.proc.wait()
            if slot.lifeline is not None:
                os.close(slot.lifeline)
                slot.lifeline = None
            if self._stopping.is_set():
                self._note_stopped(slot, code, ready)
                break
            if not ready and slot.starts == 1:
                log.error(
                    "%s (pid %d) ended with %s before it was ready; stopping",
                    slot.name,
                    slot.proc.pid,
                    _describe(code),
                )
                self._failed_start = code
                self._stop()
                break
            ran = trio.current_time() - started_at
            failures = 1 if ran >= STEADY_SECONDS else failures + 1
            delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (failures - 1))
            log.warning(
                "%s (pid %d) ended with %s; starting it again in %g s",
                slot.name,
                slot.proc.pid,
                _describe(code),
                delay,
            )
            with trio.move_on_after(delay):
                await self._stopping.wait()
        # Once decided (ready, failed, or stopped before it was), the next may start.
        task_status.started()

    async def _start(self, slot: _Slot) -> bool:
        """Start the child; True once it reports ready, False if it ended first."""
        ready_r, ready_w = os.pipe()
        lifeline_r, lifeline_w = os.pipe()
        info = ChildInfo(slot.name, slot.sock.fileno(), ready_w, lifeline_r)
        try:
            slot.proc = await trio.lowlevel.open_process(
                self._command(slot.index, slot.starts == 0),
                env={**self._env, CHILD_ENV: info.encode()},
                pass_fds=(slot.sock.fileno(), ready_w, lifeline_r),
                # Its own group: a terminal's Ctrl-C reaches the parent only, which
                # passes exactly one SIGTERM on to each child.
                process_group=0,
            )
        except BaseException:
            os.close(ready_r)
            os.close(lifeline_w)
            raise
        finally:
            os.close(ready_w)
            os.close(lifeline_r)
        slot.starts += 1
        # The child holds the lifeline's read end; ours is closed once the child ended,
        # or by the system when this parent ends, however it ends.
        slot.lifeline = lifeline_w
        log.info("started %s (pid %d)", slot.name, slot.proc.pid)
        if self._stopping.is_set():  # the stop's SIGTERMs went out before it existed
            slot.signal(signal.SIGTERM)
        async with trio.lowlevel.FdStream(ready_r) as ready:
            return bool(await ready.receive_some(1))

    def _note_ready(self) -> None:
        self._ready += 1
        if self._ready == len(self._slots):
            log.info(
                "all %d processes serve %s; Ctrl-C or SIGTERM stops them all",
                self._ready,
                self._address,
            )

    def _note_stopped(self, slot: _Slot, code: int, ready: bool) -> None:
        # A child stopped before it installed its signal handler dies of the SIGTERM.
        if code == 0 or (not ready and code == -signal.SIGTERM):
            return
        self._unclean.append(f"{slot.name} {_describe(code)}")

    async def _watch_signals(self, signals: trio.abc.ReceiveChannel[int]) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not self._stopping.is_set():
                log.info("received %s; stopping %d processes", name, len(self._slots))
                self._stop()
            else:
                log.warning("received %s again; killing the processes", name)
                self._interrupted = True
                for slot in self._slots:
                    slot.signal(signal.SIGKILL)

    def _stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        # The children hold their own copies: once they close them the port is free.
        self._close_listeners()
        for slot in self._slots:
            slot.signal(signal.SIGTERM)
        assert self._nursery is not None
        self._nursery.start_soon(self._kill_after, self._settings.shutdown_grace + STOP_MARGIN)

    async def _kill_after(self, seconds: float) -> None:
        await trio.sleep(seconds)
        log.error("processes still running %g s after the stop; killing them", seconds)
        for slot in self._slots:
            if slot.proc is not None and slot.proc.returncode is None:
                self._unclean.append(f"{slot.name} killed")
                slot.signal(signal.SIGKILL)

    def _close_listeners(self) -> None:
        for sock in self._listeners:
            sock.close()


def run_group(settings: Settings, command: Command) -> int:
    return trio.run(ProcessGroup(settings, command).run)
