"""Asset write throughput: `AssetStorage.put` against a plain dd-style copy, same disk.

Each run writes the same N MiB, in the same chunks, three ways:
- plain: a loop of `os.write` on one file, then fsync (what `dd bs=... conv=fsync`
  does), in one thread with nothing else going on;
- storage.put: an async generator of chunks through callboard's storage (temporary
  file, sha256, cap check, writes in worker threads, fsync, rename, directory fsync),
  while a trio task measures how late the event loop wakes it (it must stay live);
- `dd` itself, when it is installed (from /dev/zero).
It prints the median MiB/s of several runs, and the peak RSS of a fresh process while
storage.put writes 500 MiB (median over the runs), against its RSS before writing.

    .venv/bin/python bench/asset_write.py [--mib 500] [--runs 5] [--chunk-kib 1024] [--dir DIR]

DIR defaults to a temporary directory under the working directory (the disk the
assets would be on); files are deleted as it goes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from callboard.storage.local import AssetStorage

COMPANY = "00000000-0000-4000-8000-000000000000"
MiB = 1024 * 1024


def plain_copy(path: Path, chunk: bytes, count: int) -> float:
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(count):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


def dd_copy(path: Path, chunk_kib: int, count: int) -> float | None:
    dd = shutil.which("dd")
    if dd is None:
        return None
    start = time.perf_counter()
    subprocess.run(
        [dd, "if=/dev/zero", f"of={path}", f"bs={chunk_kib}K", f"count={count}", "conv=fsync"],
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


async def storage_put(root: Path, chunk: bytes, count: int) -> tuple[float, float]:
    """(seconds, the event loop's worst lateness in seconds) for one put."""
    storage = AssetStorage(root, {"generated": len(chunk) * count, "uploads": 1})
    worst = 0.0

    async def chunks():
        for _ in range(count):
            yield chunk

    async def watch_loop() -> None:
        nonlocal worst
        while True:
            before = trio.current_time()
            await trio.sleep(0.001)
            worst = max(worst, trio.current_time() - before - 0.001)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_loop)
        start = time.perf_counter()
        stored = await storage.put(COMPANY, "generated", "bench.bin", "video/mp4", chunks())
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    storage.path_of(stored.object_key).unlink()
    return elapsed, worst


def peak_rss_child(root: Path, chunk_kib: int, mib: int) -> tuple[int, int]:
    """(RSS before writing, peak RSS) of a fresh process writing `mib` MiB, in bytes."""
    out = subprocess.run(
        [
            *(sys.executable, __file__, "--rss-child", "--dir", str(root)),
            *("--chunk-kib", str(chunk_kib), "--mib", str(mib)),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    figures = json.loads(out.stdout)
    return figures["before"], figures["peak"]


def rss_child(root: Path, chunk_kib: int, mib: int) -> None:
    chunk = os.urandom(chunk_kib * 1024)
    count = mib * MiB // len(chunk)
    # Warm up every import and thread the write will use, with a small put.
    trio.run(storage_put, root, chunk, 1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    trio.run(storage_put, root, chunk, count)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"before": before, "peak": peak}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chunk-kib", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.dir, args.chunk_kib, args.mib)
        return 0
    with tempfile.TemporaryDirectory(prefix="callboard-bench-", dir=args.dir or Path.cwd()) as d:
        root = Path(d)
        chunk = os.urandom(args.chunk_kib * 1024)
        count = args.mib * MiB // len(chunk)
        size_mib = count * len(chunk) / MiB
        plain, put, dd, lateness, rss = [], [], [], [], []
        for run in range(args.runs):
            # Alternate the order so neither always follows the other's writeback.
            order = ("put", "plain") if run % 2 else ("plain", "put")
            for which in order:
                if which == "plain":
                    plain.append(size_mib / plain_copy(root / "plain.bin", chunk, count))
                else:
                    seconds, late = trio.run(storage_put, root / "assets", chunk, count)
                    put.append(size_mib / seconds)
                    lateness.append(late)
            seconds = dd_copy(root / "dd.bin", args.chunk_kib, count)
            if seconds is not None:
                dd.append(size_mib / seconds)
            rss.append(peak_rss_child(root / "rss", args.chunk_kib, 500))
    median = statistics.median
    print(f"asset write, {size_mib:.0f} MiB in {args.chunk_kib} KiB chunks, median of {args.runs}")
    print(f"  plain chunked write + fsync : {median(plain):7.0f} MiB/s")
    if dd:
        print(f"  dd conv=fsync (/dev/zero)   : {median(dd):7.0f} MiB/s")
    ratio = median(put) / median(plain)
    print(f"  storage.put (sha256, fsync) : {median(put):7.0f} MiB/s  ({ratio:.0%} of plain)")
    print(f"  event loop lateness (worst) : {median(lateness) * 1000:7.1f} ms")
    before = median(b for b, _ in rss) / MiB
    peak = median(p for _, p in rss) / MiB
    print(
        f"  peak RSS writing 500 MiB    : {peak:7.1f} MiB "
        f"(+{peak - before:.1f} MiB over {before:.1f} MiB before the write)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
