"""Job types every node knows: for demos, smoke tests and benchmarks."""

from __future__ import annotations

import math

import trio

from .jobs import HandlerRegistry, JobContext

builtins = HandlerRegistry()


async def noop(ctx: JobContext) -> None:
    """Does nothing: measures the runtime's own overhead."""


async def sleep(ctx: JobContext) -> None:
    """Input `{"seconds": S}`: sleeps S seconds, reporting progress about ten times."""
    seconds = ctx.input.get("seconds", 1)
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
    ):
        raise ValueError("input.seconds must be a number")
    if seconds < 0:
        raise ValueError("input.seconds must not be negative")
    steps = 10
    for step in range(steps):
        await ctx.progress(
            step * 100 / steps, f"sleeping ({step * seconds / steps:g}/{seconds:g}s)"
        )
        await trio.sleep(seconds / steps)
    await ctx.progress(100, f"slept {seconds:g}s")


async def fail(ctx: JobContext) -> None:
    """Input `{"message": M}`: fails every attempt with M."""
    raise RuntimeError(str(ctx.input.get("message", "demo failure")))


builtins.register("noop", noop)
builtins.register("demo.sleep", sleep)
builtins.register("demo.fail", fail)
