"""Job types every node knows: for demos, smoke tests and benchmarks."""

from __future__ import annotations

import math
import mimetypes

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


_RENDER_FIELDS = {"bytes", "chunk", "contentType", "filename"}
_MAX_CHUNK = 16 * 1024 * 1024


def _whole(value: object, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"input.{name} must be a whole number of at least {low}")
    if high is not None and value > high:
        raise ValueError(f"input.{name} must be at most {high}")
    return value


async def render(ctx: JobContext) -> None:
    """Input `{"bytes": N, "chunk": M, "contentType": T}` (M defaults to 1 MiB, T to
    application/octet-stream; an optional "filename"): streams N bytes of generated
    content into a `generated` asset, M at a time, with progress. Memory stays at one
    chunk whatever N, so it exercises the storage path up to (and past) its cap."""
    unknown = sorted(set(ctx.input) - _RENDER_FIELDS)
    if unknown:
        raise ValueError(f"unknown input field(s): {', '.join(unknown)}")
    total = _whole(ctx.input.get("bytes"), "bytes", 0)
    chunk = _whole(ctx.input.get("chunk", 1024 * 1024), "chunk", 1, _MAX_CHUNK)
    content_type = ctx.input.get("contentType", "application/octet-stream")
    if not isinstance(content_type, str):
        raise TypeError("input.contentType must be a string")
    filename = ctx.input.get("filename")
    if filename is None:
        filename = "render" + (mimetypes.guess_extension(content_type.split(";")[0]) or ".bin")
    # One block, reused: varied bytes (not zeros a filesystem could store sparsely),
    # generated once so the content costs nothing per chunk.
    seed = ctx.job_id.encode()
    block = (seed * (chunk // len(seed) + 1))[:chunk]
    await ctx.progress(0, f"rendering {total} bytes")
    async with ctx.open_asset(filename, content_type) as out:
        written = 0
        while written < total:
            size = min(chunk, total - written)
            await out.write(block if size == chunk else block[:size])
            written += size
            await ctx.progress(written * 100 / total, f"{written} of {total} bytes")
    await ctx.progress(100, f"rendered {total} bytes")


builtins.register("noop", noop)
builtins.register("demo.sleep", sleep)
builtins.register("demo.fail", fail)
builtins.register("demo.render", render)
