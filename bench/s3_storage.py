"""callboard's asset storage on S3 beside the local disk: a streamed write and read of
one big asset through `AssetStorage`, as a job's `save_asset` and a download drive it.

For each backend (`file://` in a temporary directory, `s3://` on moto's S3 server in
its own process, so its CPU is not counted), a `--mib` MiB asset of random bytes is
written from an async generator of 1 MiB chunks (cap checked per chunk, sha256 as it
streams), then read back through `read_chunks` and checked by sha256. Printed: MiB/s
and this process's CPU seconds per GiB (all threads), alternated rounds and their
medians; and, from one more write and read per backend of an asset made of one reused
chunk, the most memory the write held at once (tracemalloc) and how far the process's
peak RSS rose over the write and the read: what "memory stays bounded whatever the
size" means.

    pip install -e '.[bench]'      # moto's server (boto3 comes with the dev extra)
    .venv/bin/python bench/s3_storage.py [--mib 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import tempfile
import time
import tracemalloc
from contextlib import aclosing

import benchkit
import trio
from benchkit import MIB

COMPANY = "0b7e1a52-6c1d-4f0e-9a55-3f1f0e1d2c3b"


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def write(storage, data: bytes) -> tuple[str, float, float]:
    view = memoryview(data)

    async def chunks():
        for start in range(0, len(view), MIB):
            yield view[start : start + MIB]

    wall, used = time.perf_counter(), cpu()
    stored = await storage.put(
        COMPANY, "generated", "big.bin", "application/octet-stream", chunks()
    )
    return stored.object_key, time.perf_counter() - wall, cpu() - used


async def read(storage, key: str, expected: str) -> tuple[float, float]:
    digest = hashlib.sha256()
    wall, used = time.perf_counter(), cpu()
    async with aclosing(storage.read_chunks(key)) as chunks:
        async for chunk in chunks:
            digest.update(chunk)
    elapsed, spent = time.perf_counter() - wall, cpu() - used
    if digest.hexdigest() != expected:
        raise SystemExit(f"{key}: read back different bytes")
    return elapsed, spent


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM, the peak RSS, starts again from the RSS now


async def peaks(storage, size: int) -> tuple[int, int]:
    """(most bytes the write held at once by tracemalloc, peak RSS growth in KiB over
    the write and the read): a `size` asset from one reused 1 MiB chunk, so the source
    itself holds nothing."""
    chunk = os.urandom(MIB)

    async def chunks():
        for _ in range(size // MIB):
            yield chunk

    tracemalloc.start()
    try:
        stored = await storage.put(COMPANY, "generated", "peak.bin", "video/mp4", chunks())
        traced = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    await storage.delete(stored.object_key)
    _reset_peak_rss()
    before = _status_kib("VmRSS")
    stored = await storage.put(COMPANY, "generated", "peak.bin", "video/mp4", chunks())
    async with aclosing(storage.read_chunks(stored.object_key)) as read:
        async for _ in read:
            pass
    grown = _status_kib("VmHWM") - before
    await storage.delete(stored.object_key)
    return traced, grown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from callboard.storage.location import open_storage

    moto, endpoint = benchkit.start_moto()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL_S3=endpoint,
    )
    caps = {"generated": (args.mib + 1) * MIB, "uploads": MIB}
    try:
        with tempfile.TemporaryDirectory() as folder:
            stores = {
                "file://": open_storage(f"file://{folder}/assets", caps),
                "s3://": open_storage("s3://bench/assets", caps),
            }
            stores["s3://"].backend.call("create_bucket")
            # Peaks first, before the random data of the timed rounds is in memory.
            peak = {name: trio.run(peaks, stores[name], args.mib * MIB) for name in stores}
            data = os.urandom(args.mib * MIB)
            expected = hashlib.sha256(data).hexdigest()
            results: dict[str, list[tuple[float, float, float, float]]] = {n: [] for n in stores}
            for index in range(args.rounds):
                for name, storage in stores.items():  # alternated: noise hits both
                    key, w, wc = trio.run(write, storage, data)
                    r, rc = trio.run(read, storage, key, expected)
                    trio.run(storage.delete, key)
                    results[name].append((w, wc, r, rc))
                    print(
                        f"round {index + 1} {name:<8} write {args.mib / w:6.1f} MiB/s "
                        f"({wc:.2f} s CPU)  read {args.mib / r:6.1f} MiB/s ({rc:.2f} s CPU)",
                        flush=True,
                    )
            gib = args.mib / 1024
            print(f"\nmedians of {args.rounds} rounds, {args.mib} MiB streamed in 1 MiB chunks:")
            heads = ("write MiB/s", "CPU s/GiB", "read MiB/s", "CPU s/GiB", "held", "peak RSS+")
            print(f"  {'backend':<8} " + " ".join(f"{head:>11}" for head in heads))
            for name, rounds in results.items():
                w, wc, r, rc = (statistics.median(f[i] for f in rounds) for i in range(4))
                traced, grown = peak[name]
                print(
                    f"  {name:<8} {args.mib / w:>11.1f} {wc / gib:>11.2f} "
                    f"{args.mib / r:>11.1f} {rc / gib:>11.2f} {traced / MIB:>7.1f} MiB "
                    f"{grown / 1024:>7.1f} MiB"
                )
            print(
                "  held: the most the write held at once (tracemalloc); peak RSS+: how far "
                "the process's peak RSS rose over the RSS before a write and read"
            )
    finally:
        benchkit.stop(moto)


if __name__ == "__main__":
    main()
