"""Handlers for the blocked-loop tests, loaded by real `callboard serve` processes with
`--handlers blocking_handlers`. Each attempt appends a line to the file named in its
input, so the test can see which attempts started and which ended, and when."""

from __future__ import annotations

import os
import time

import callboard

board = callboard.Board()


def _note(path: str, what: str, attempt: int) -> None:
    with open(path, "a") as out:
        out.write(f"{what} {attempt} {os.getpid()} {time.time():.3f}\n")


@board.handler("test.block_first", max_attempts=3)
async def block_first(ctx: callboard.JobContext) -> None:
    """Blocks the event loop on its first attempt (as a CPU-bound or synchronous
    handler would), runs normally on the next."""
    path = str(ctx.input["log"])
    _note(path, "start", ctx.attempt)
    if ctx.attempt == 1:
        time.sleep(float(ctx.input["seconds"]))  # noqa: ASYNC251 - the mistake under test
    _note(path, "end", ctx.attempt)
