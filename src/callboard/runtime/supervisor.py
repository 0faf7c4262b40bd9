"""An Erlang/OTP-style supervisor for trio tasks; the whole policy is on `Supervisor`."""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from .actor import Startable

logger = logging.getLogger("callboard.runtime")


class Restart(enum.Enum):
    PERMANENT = "permanent"  # always restarted
    TRANSIENT = "transient"  # restarted only when it raised
    TEMPORARY = "temporary"  # never restarted


class Strategy(enum.Enum):
    ONE_FOR_ONE = "one_for_one"  # restart the child that exited
    ONE_FOR_ALL = "one_for_all"  # stop every child, restart them all
    REST_FOR_ONE = "rest_for_one"  # stop and restart that child and those started after it


@dataclass(frozen=True, slots=True)
class ChildSpec:
    name: str
    start: Startable
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.shutdown_timeout < 0:
            raise ValueError(f"child {self.name!r}: shutdown_timeout must be >= 0")


class SupervisorEscalation(Exception):
    """A supervisor gave up: a child failed to start, or failed too often.

    `error` (also the ``__cause__``) is the child's last exception; it is None
    when a PERMANENT child kept returning normally.
    """

    def __init__(self, supervisor: str, child: str, error: BaseException | None, why: str) -> None:
        self.supervisor = supervisor
        self.child = child
        self.error = error
        super().__init__(f"supervisor {supervisor!r}: child {child!r} {why}; last error: {error!r}")


@dataclass(frozen=True, slots=True)
class ChildStatistics:
    name: str
    running: bool
    restarts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class SupervisorStatistics:
    name: str
    strategy: Strategy
    running: bool
    restarts: int
    children: tuple[ChildStatistics, ...]  # in start order


@dataclass(eq=False)
class _Run:
    """One start of one child: its cancel scope and how it ended."""

    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    error: Exception | None = None
    # Ended by returning or raising an Exception, as opposed to a BaseException
    # on its way out of the nursery, which must not look like a restartable exit.
    exited: bool = False
    stopping: bool = False
    stop_deadline: float = 0.0


@dataclass(eq=False)
class _Child:
    spec: ChildSpec
    current: _Run | None = None
    finished: bool = False  # stopped for good in this run of the supervisor
    restarts: int = 0
    last_error: str | None = None


class _ReadyStatus(trio.TaskStatus[Any]):
    """Tells a crash before ``started()`` (a failed start) from one after it."""

    def __init__(self, inner: trio.TaskStatus[Any]) -> None:
        self._inner = inner
        self.ready = False

    def started(self, value: Any = None) -> None:
        self.ready = True
        self._inner.started(value)


def _restartable(restart: Restart, error: Exception | None) -> bool:
    if restart is Restart.PERMANENT:
        return True
    return restart is Restart.TRANSIENT and error is not None


class Supervisor:
    """Runs children in one nursery and restarts them by an OTP policy.

    Start-up: children start one at a time in the given order; each must call
    ``task_status.started(value)`` before the next one starts. `run` calls its
    own ``task_status.started(self)`` only once all are ready, so a supervisor
    is itself a startable child and supervisors nest. A child that raises (or
    returns) before reporting ready during this initial start is not retried:
    the children already started are stopped in reverse order and
    `SupervisorEscalation` is raised, because a tree that cannot start is a
    configuration or environment fault that retries would only hide (OTP does
    the same). During a restart, a failed start counts as a crash of that
    child, with the intensity and backoff below.

    Exits: a child *crashes* when it raises an `Exception` (an
    `ExceptionGroup` of Exceptions included) and *exits normally* when it
    returns. Cancellation by the supervisor is neither. PERMANENT children are
    restarted after both, TRANSIENT children only after a crash, TEMPORARY
    children never. Every crash is logged to ``callboard.runtime`` with its
    traceback. A BaseException that is not an Exception (KeyboardInterrupt,
    SystemExit, ...) is never handled: the children are stopped and it
    propagates, inside the nursery's BaseExceptionGroup. When every child has
    stopped for good, `run` returns.

    Strategy: ONE_FOR_ONE restarts only the child that exited. ONE_FOR_ALL
    stops every other child in reverse start order, then starts them all in
    order. REST_FOR_ONE does the same for that child and the children started
    after it; the earlier ones keep running. A TEMPORARY sibling stopped this
    way stays stopped, and a sibling that had already stopped for good is not
    brought back. An error a sibling raises while being stopped is logged and
    recorded, not treated as another crash.

    Intensity: each restart (one per exit, however many children it restarts)
    is stamped with ``trio.current_time()``. If it would make more than
    `max_restarts` restarts within the last `period` seconds, the supervisor
    escalates instead. `max_restarts=0` escalates on the first exit that would
    be restarted.

    Backoff: after stopping the affected children and before starting them
    again the supervisor waits `backoff_initial` seconds, doubling at each
    further restart up to `backoff_max`; the delay resets to `backoff_initial`
    once a whole `period` has passed with no restart.

    Escalation: every child is stopped in reverse start order (see Shutdown),
    then `SupervisorEscalation` is raised bare, not in an exception group,
    naming the child and carrying its last exception as ``error`` and
    ``__cause__``. A parent supervisor sees it as a crash of this supervisor
    and applies its own policy.

    Shutdown (`stop`, escalation, cancellation of the supervisor): children are
    stopped one at a time in reverse start order. Stopping a child cancels its
    own cancel scope and waits up to its `shutdown_timeout`. Once ready, a
    child runs shielded, so a cancellation of the supervisor reaches it only
    through this ordered shutdown; then `trio.Cancelled` propagates and nothing
    is counted as a restart. Trio cannot kill a task: a child that outlives its
    deadline (say, in a long shielded cleanup) is logged as a warning and the
    supervisor moves on to the next child, but the straggler still belongs to
    the supervisor's nursery, so `run` ends only after it does and no task is
    ever orphaned. In a restart, the new run may start while the old one
    finishes its cleanup.

    `run` may run again after it ended (so a parent can restart a nested
    supervisor) with a fresh intensity window and backoff; the counters in
    `statistics` add up over the supervisor's lifetime.
    """

    def __init__(
        self,
        name: str,
        children: Sequence[ChildSpec],
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        period: float = 5.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
    ) -> None:
        names = [spec.name for spec in children]
        if len(set(names)) != len(names):
            raise ValueError(f"supervisor {name!r}: child names must be unique, got {names}")
        if max_restarts < 0 or period <= 0:
            raise ValueError(f"supervisor {name!r}: need max_restarts >= 0 and period > 0")
        if not 0 <= backoff_initial <= backoff_max:
            raise ValueError(f"supervisor {name!r}: need 0 <= backoff_initial <= backoff_max")
        self.name = name
        self.strategy = strategy
        self._children = [_Child(spec) for spec in children]
        self._max_restarts = max_restarts
        self._period = period
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._restarts = 0
        self._running = False
        self._restart_times: deque[float] = deque()
        self._delay = backoff_initial
        self._wakeup = trio.Event()
        self._stop_requested = trio.Event()
        self._finished = trio.Event()
        self._nursery: trio.Nursery | None = None

    def statistics(self) -> SupervisorStatistics:
        return SupervisorStatistics(
            name=self.name,
            strategy=self.strategy,
            running=self._running,
            restarts=self._restarts,
            children=tuple(
                ChildStatistics(
                    name=child.spec.name,
                    running=child.current is not None and not child.current.done.is_set(),
                    restarts=child.restarts,
                    last_error=child.last_error,
                )
                for child in self._children
            ),
        )

    async def stop(self) -> None:
        """Stop all children in reverse start order, then wait until `run` has returned.

        Returns at once if the supervisor is not running. A stop requested while
        the children are starting takes effect once they are all ready.
        """
        if not self._running:
            return
        finished = self._finished
        self._stop_requested.set()
        self._wakeup.set()
        await finished.wait()

    async def run(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if self._running:
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        self._running = True
        self._restart_times.clear()
        self._delay = self._backoff_initial
        self._stop_requested = trio.Event()
        self._finished = trio.Event()
        for child in self._children:
            child.current, child.finished = None, False
        escalation: SupervisorEscalation | None = None
        try:
            async with trio.open_nursery(strict_exception_groups=True) as nursery:
                self._nursery = nursery
                try:
                    for child in self._children:
                        if (error := await self._start(child)) is not None:
                            why = "failed to start"
                            escalation = SupervisorEscalation(
                                self.name, child.spec.name, error, why
                            )
                            break
                    else:
                        task_status.started(self)
                        escalation = await self._supervise()
                finally:
                    with trio.CancelScope(shield=True):
                        for child in reversed(self._children):
                            await self._stop(child)
        finally:
            self._nursery = None
            self._running = False
            self._finished.set()
        if escalation is not None:
            # Raised outside the nursery so that the parent gets it bare.
            raise escalation from escalation.error

    async def _supervise(self) -> SupervisorEscalation | None:
        while not self._stop_requested.is_set():
            # A fresh event before the scan: an exit after the scan sets this one.
            self._wakeup = trio.Event()
            child = next((c for c in self._children if c.current and c.current.exited), None)
            if child is None:
                if all(c.finished for c in self._children):
                    return None
                await self._wakeup.wait()
                continue
            assert child.current is not None
            error = child.current.error
            child.current = None
            if not _restartable(child.spec.restart, error):
                child.finished = True
                if error is None:
                    # A clean end (a web server that drained): nothing went wrong.
                    logger.info(
                        "supervisor %r: child %r ended normally", self.name, child.spec.name
                    )
                else:
                    logger.info(
                        "supervisor %r: child %r stopped for good", self.name, child.spec.name
                    )
                continue
            if not self._admit_restart():
                why = f"exceeded {self._max_restarts} restarts in {self._period}s"
                logger.error(
                    "supervisor %r: child %r %s; escalating", self.name, child.spec.name, why
                )
                return SupervisorEscalation(self.name, child.spec.name, error, why)
            await self._restart(child)
        return None

    def _admit_restart(self) -> bool:
        now = trio.current_time()
        while self._restart_times and now - self._restart_times[0] >= self._period:
            self._restart_times.popleft()
        if len(self._restart_times) >= self._max_restarts:
            return False
        # An empty window means a quiet period has passed: back off from the start.
        if self._restart_times:
            self._delay = min(self._delay * 2, self._backoff_max)
        else:
            self._delay = self._backoff_initial
        self._restart_times.append(now)
        self._restarts += 1
        return True

    async def _restart(self, failed: _Child) -> None:
        if self.strategy is Strategy.ONE_FOR_ONE:
            group = [failed]
        else:
            first = 0 if self.strategy is Strategy.ONE_FOR_ALL else self._children.index(failed)
            group = self._children[first:]
        for sibling in reversed(group):
            run = sibling.current
            # A sibling that ended on its own just before keeps its own verdict.
            if run is not None and run.exited and not run.stopping:
                if not _restartable(sibling.spec.restart, run.error):
                    sibling.finished = True
            elif run is not None and sibling.spec.restart is Restart.TEMPORARY:
                sibling.finished = True
            await self._stop(sibling)
        with trio.move_on_after(self._delay):
            await self._stop_requested.wait()
        for child in group:
            if self._stop_requested.is_set():
                return
            if child.finished:
                continue
            child.restarts += 1
            logger.info("supervisor %r: restarting child %r", self.name, child.spec.name)
            error = await self._start(child)
            if error is not None:
                # Leave a finished run behind so that the loop treats it as a crash.
                child.current = _Run(error=error, exited=True)
                child.current.done.set()
                return

    async def _start(self, child: _Child) -> Exception | None:
        assert self._nursery is not None
        run = _Run()
        try:
            await self._nursery.start(self._run_child, child, run)
        except Exception as exc:
            child.last_error = repr(exc)
            name = child.spec.name
            logger.error("supervisor %r: child %r failed to start", self.name, name, exc_info=True)
            return exc
        # Shielded only once ready, so that a cancelled start-up can still be
        # interrupted; from now on only _stop cancels the child, in order.
        run.scope.shield = True
        child.current = run
        return None

    async def _run_child(
        self, child: _Child, run: _Run, *, task_status: trio.TaskStatus[Any]
    ) -> None:
        status = _ReadyStatus(task_status)
        try:
            with run.scope:
                await child.spec.start(task_status=status)
        except Exception as exc:
            if not status.ready:
                raise  # nursery.start() hands it to _start
            run.error, run.exited = exc, True
            child.last_error = repr(exc)
            level, what = (
                (logging.WARNING, "raised while being stopped")
                if run.stopping
                else (logging.ERROR, "crashed")
            )
            logger.log(
                level, "supervisor %r: child %r %s", self.name, child.spec.name, what, exc_info=True
            )
        else:
            run.exited = True
        finally:
            run.done.set()
            self._wakeup.set()

    async def _stop(self, child: _Child) -> None:
        run = child.current
        if run is None:
            return
        if not run.done.is_set():
            if not run.stopping:
                run.stopping = True
                run.stop_deadline = trio.current_time() + child.spec.shutdown_timeout
                run.scope.cancel()
            with trio.move_on_at(run.stop_deadline):
                await run.done.wait()
            if not run.done.is_set():
                logger.warning(
                    "supervisor %r: child %r ignored its %ss shutdown deadline; "
                    "moving on, it will be awaited when the supervisor exits",
                    self.name,
                    child.spec.name,
                    child.spec.shutdown_timeout,
                )
        child.current = None
