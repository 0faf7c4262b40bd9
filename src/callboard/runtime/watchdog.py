"""A watchdog for the trio loop itself: code that blocks it (CPU work, `time.sleep`, a
synchronous HTTP call in a task) stops every task of the process, timers included.

A heartbeat task wakes every `interval` seconds and notes the time. It measures how
late each wake-up was: a wake-up later than `warn_after` is a stall, reported through
`on_stall(seconds)` (in the trio thread, once the loop runs again) and counted in
`statistics()`.

A thread watches the heartbeat from outside the loop, because a blocked loop cannot
notice anything itself. When the loop has not run for `fatal_after` seconds, the
thread calls `on_fatal(seconds)` and then ends the process with `os._exit`: whatever
the loop was doing can no longer be trusted to stop in time (a job's lease runs out
while its handler still runs, and another node would run it a second time). A dead
process is safe: its leases run out and its jobs are reclaimed once, elsewhere or by
the next start. `fatal_after=None` only warns.

The thread holds no lock the loop needs and touches only floats and the callbacks, so
it can always act, even while the loop is stuck in C code holding the GIL only in
short stretches (as `time.sleep` and blocking I/O do).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

log = logging.getLogger("callboard.watchdog")

#: The exit status of a process the watchdog ended (EX_SOFTWARE).
EXIT_STALLED = 70


@dataclass(frozen=True, slots=True)
class WatchdogStatistics:
    stalls: int
    longest_stall: float
    last_stall: float


class LoopWatchdog:
    def __init__(
        self,
        *,
        warn_after: float = 0.5,
        fatal_after: float | None = None,
        interval: float = 0.1,
        on_stall: Callable[[float], None] | None = None,
        on_fatal: Callable[[float], None] | None = None,
        exit: Callable[[int], object] = os._exit,
        must_run_by: Callable[[], float | None] | None = None,
    ) -> None:
        if fatal_after is not None and fatal_after <= warn_after:
            raise ValueError("fatal_after must be longer than warn_after")
        self.warn_after = warn_after
        self.fatal_after = fatal_after
        self.interval = interval
        self._on_stall = on_stall
        self._on_fatal = on_fatal
        self._exit = exit
        #: A `time.monotonic()` by which the loop must have run (something in it has a
        #: deadline only it can act on), or None; a loop stalled past it is fatal too.
        self._must_run_by = must_run_by
        self._beat = time.monotonic()
        self._stalls = 0
        self._longest = 0.0
        self._last = 0.0

    def statistics(self) -> WatchdogStatistics:
        return WatchdogStatistics(self._stalls, self._longest, self._last)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if _virtual_clock():
            # Under a virtual clock (tests) the loop may rightly sit still while real
            # time passes: it is the clock that decides when tasks wake, not the loop.
            task_status.started()
            await trio.sleep_forever()
        stop = threading.Event()
        watcher = threading.Thread(
            target=self._watch, args=(stop,), name="callboard-loop-watchdog", daemon=True
        )
        self._beat = time.monotonic()
        watcher.start()
        task_status.started()
        # The watcher thread needs the GIL and the logging locks to report and exit; a
        # loop stuck in a long C call, or in a log call on a full pipe, holds one of
        # them. faulthandler's own C thread needs neither: re-armed on every heartbeat,
        # it dumps every thread's stack and exits one second after the watcher should
        # have acted. (Not when a test replaced the exit: it is process-wide.)
        backstop = self.fatal_after is not None and self._exit is os._exit
        try:
            while True:
                before = time.monotonic()
                self._beat = before
                if backstop:
                    faulthandler.dump_traceback_later(
                        self.fatal_after + self.interval + 1.0, exit=True
                    )
                await trio.sleep(self.interval)
                late = time.monotonic() - before - self.interval
                if late > self.warn_after:
                    self._stalled(late)
        finally:
            stop.set()
            if backstop:
                faulthandler.cancel_dump_traceback_later()

    def _stalled(self, seconds: float) -> None:
        self._stalls += 1
        self._last = seconds
        self._longest = max(self._longest, seconds)
        if self._on_stall is not None:
            self._on_stall(seconds)

    def _watch(self, stop: threading.Event) -> None:
        if self.fatal_after is None:
            return
        while not stop.wait(self.interval):
            now = time.monotonic()
            silent = now - self._beat - self.interval
            due = self._must_run_by() if self._must_run_by is not None else None
            missed = due is not None and now > due and silent > self.warn_after
            if silent > self.fatal_after or missed:
                try:
                    if self._on_fatal is not None:
                        self._on_fatal(silent)
                except Exception:
                    log.critical(
                        "the event loop has been blocked for %.1f s: ending the process",
                        silent,
                        exc_info=True,
                    )
                finally:
                    _flush_logs()  # the lines that say why must reach the log
                    self._exit(EXIT_STALLED)
                return


def _flush_logs() -> None:
    for logger in (logging.getLogger(), log):
        for handler in logger.handlers:
            handler.flush()


def _virtual_clock() -> bool:
    """True under a clock other than trio's own (trio.testing.MockClock in tests)."""
    return type(trio.lowlevel.current_clock()).__module__.startswith("trio.testing")
