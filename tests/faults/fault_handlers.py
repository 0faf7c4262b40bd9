"""Handlers for the fault tests, loaded by real `callboard serve` processes with
`--handlers fault_handlers`. Each attempt appends a line to the file named in its
input, so the test can see which attempts started and which ended, and when."""

from __future__ import annotations

import os
import time

import trio

import callboard

board = callboard.Board()


def _note(path: str, what: str, attempt: int) -> None:
    line = f"{what} {attempt} {os.getpid()} {time.time():.3f}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write of a short line: appends never interleave
    finally:
        os.close(fd)


@board.handler("test.block_first", max_attempts=3)
async def block_first(ctx: callboard.JobContext) -> None:
    """Blocks the event loop on its first attempt (as a CPU-bound or synchronous
    handler would), runs normally on the next."""
    path = str(ctx.input["log"])
    _note(path, "start", ctx.attempt)
    if ctx.attempt == 1:
        time.sleep(float(ctx.input["seconds"]))  # noqa: ASYNC251 - the mistake under test
    _note(path, "end", ctx.attempt)


@board.handler("test.short", max_attempts=3)
async def short(ctx: callboard.JobContext) -> None:
    """A short job that notes when each attempt starts and ends (one line each, appended
    in one write, so lines of concurrent attempts never mix)."""
    path = str(ctx.input["log"])
    _note(path, f"start {ctx.job_id}", ctx.attempt)
    await trio.sleep(float(ctx.input.get("seconds", 0.05)))
    _note(path, f"end {ctx.job_id}", ctx.attempt)
