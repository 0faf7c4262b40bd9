"""Which S3 client for an S3 storage backend: streamed writes and reads from trio.

A storage backend for S3-compatible object stores needs a maintained client that a
trio program can drive with the object streaming through in parts (never whole in
memory). This measures the candidates on the same local S3 API (moto's standalone
server on a loopback port, started here), each called from trio the way the backend
would call it:

- `boto3-threads`: boto3's client in trio worker threads: a multipart upload of
  `--part-mib` parts (one thread call per part), and a read of `get_object`'s body in
  1 MiB chunks (one thread call per chunk);
- `obstore-threads`: obstore's synchronous API in trio worker threads: its buffered
  multipart writer (`open_writer`, one thread call per part written) and its byte
  stream reader (one thread call per chunk);
- `aiobotocore-aio`: aiobotocore on an asyncio loop that trio-asyncio runs inside the
  trio program (as callboard's PostgreSQL driver runs): the same multipart upload, and
  the body read in 1 MiB chunks.

For each, a `--mib` MiB object (random bytes, generated once, fed part by part) is
written, then read back and compared by sha256; wall time and this process's CPU time
(all threads) are printed as MiB/s and CPU seconds per GiB. moto's server runs in its
own process, so its CPU is not counted; it is the slow side here, so the wall figures
are its ceiling and the CPU figures are what tells the clients apart.

    pip install -e '.[bench]'      # moto's server, boto3, obstore, aiobotocore
    .venv/bin/python bench/s3_clients.py [--mib 500] [--part-mib 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import time
from collections.abc import Callable

import benchkit
import trio

MIB = 1024 * 1024
BUCKET = "bench"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def parts(data: bytes, size: int) -> list[memoryview]:
    view = memoryview(data)
    return [view[i : i + size] for i in range(0, len(view), size)]


class Boto3Threads:
    name = "boto3-threads"

    def __init__(self, endpoint: str) -> None:
        import boto3

        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )

    async def write(self, key: str, chunks: list[memoryview]) -> None:
        run = trio.to_thread.run_sync
        upload = await run(lambda: self.client.create_multipart_upload(Bucket=BUCKET, Key=key))
        upload_id = upload["UploadId"]
        done = []
        for number, chunk in enumerate(chunks, 1):
            answer = await run(
                lambda c=chunk, n=number: self.client.upload_part(
                    Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=n, Body=bytes(c)
                )
            )
            done.append({"PartNumber": number, "ETag": answer["ETag"]})
        await run(
            lambda: self.client.complete_multipart_upload(
                Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
            )
        )

    async def read(self, key: str, digest: Callable[[bytes], None]) -> None:
        run = trio.to_thread.run_sync
        body = (await run(lambda: self.client.get_object(Bucket=BUCKET, Key=key)))["Body"]
        chunks = body.iter_chunks(MIB)
        while True:
            chunk = await run(next, chunks, b"")
            if not chunk:
                break
            digest(chunk)


class ObstoreThreads:
    name = "obstore-threads"

    def __init__(self, endpoint: str) -> None:
        from obstore.store import S3Store

        self.store = S3Store(
            BUCKET,
            endpoint=endpoint,
            region="us-east-1",
            access_key_id="bench",
            secret_access_key="bench",
            client_options={"allow_http": True},
            virtual_hosted_style_request=False,
        )

    async def write(self, key: str, chunks: list[memoryview]) -> None:
        import obstore

        run = trio.to_thread.run_sync
        size = len(chunks[0])
        writer = await run(lambda: obstore.open_writer(self.store, key, buffer_size=size))
        for chunk in chunks:
            await run(writer.write, bytes(chunk))
        await run(writer.close)

    async def read(self, key: str, digest: Callable[[bytes], None]) -> None:
        import obstore

        run = trio.to_thread.run_sync
        stream = (await run(obstore.get, self.store, key)).stream(min_chunk_size=MIB)
        while True:
            chunk = await run(next, stream, None)
            if chunk is None:
                break
            digest(bytes(chunk))


class AiobotocoreAsyncio:
    """aiobotocore on an asyncio loop run by trio-asyncio, as the PostgreSQL driver runs."""

    name = "aiobotocore-aio"

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def _client(self):  # type: ignore[no-untyped-def]
        from aiobotocore.session import get_session

        return get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )

    async def write(self, key: str, chunks: list[memoryview]) -> None:
        import trio_asyncio

        async def upload() -> None:
            async with self._client() as client:
                upload = await client.create_multipart_upload(Bucket=BUCKET, Key=key)
                upload_id = upload["UploadId"]
                done = []
                for number, chunk in enumerate(chunks, 1):
                    answer = await client.upload_part(
                        Bucket=BUCKET,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=bytes(chunk),
                    )
                    done.append({"PartNumber": number, "ETag": answer["ETag"]})
                await client.complete_multipart_upload(
                    Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
                )

        async with trio_asyncio.open_loop():
            await trio_asyncio.aio_as_trio(upload)()

    async def read(self, key: str, digest: Callable[[bytes], None]) -> None:
        import trio_asyncio

        async def download() -> None:
            async with self._client() as client:
                answer = await client.get_object(Bucket=BUCKET, Key=key)
                async with answer["Body"] as body:
                    while chunk := await body.read(MIB):
                        digest(chunk)

        async with trio_asyncio.open_loop():
            await trio_asyncio.aio_as_trio(download)()


async def measure(client, data: bytes, part: int, index: int) -> tuple[float, float, float, float]:
    key = f"object-{client.name}-{index}"
    cpu, wall = cpu_seconds(), time.perf_counter()
    await client.write(key, parts(data, part))
    write_wall, write_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    sha = hashlib.sha256()
    cpu, wall = cpu_seconds(), time.perf_counter()
    await client.read(key, sha.update)
    read_wall, read_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    if sha.hexdigest() != hashlib.sha256(data).hexdigest():
        raise SystemExit(f"{client.name}: the object read back differs")
    return write_wall, write_cpu, read_wall, read_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=500)
    parser.add_argument("--part-mib", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    moto, endpoint = benchkit.start_moto()
    try:
        clients = [Boto3Threads(endpoint), ObstoreThreads(endpoint), AiobotocoreAsyncio(endpoint)]
        clients[0].client.create_bucket(Bucket=BUCKET)
        data = os.urandom(args.mib * MIB)
        results: dict[str, list[tuple[float, float, float, float]]] = {c.name: [] for c in clients}
        for index in range(args.rounds):
            for client in clients:  # alternated, so the machine's noise hits both
                figures = trio.run(measure, client, data, args.part_mib * MIB, index)
                results[client.name].append(figures)
                w, wc, r, rc = figures
                print(
                    f"round {index + 1} {client.name:<16} write {args.mib / w:6.1f} MiB/s "
                    f"({wc:.2f} s CPU)  read {args.mib / r:6.1f} MiB/s ({rc:.2f} s CPU)",
                    flush=True,
                )
                clients[0].client.delete_object(Bucket=BUCKET, Key=f"object-{client.name}-{index}")
        gib = args.mib / 1024
        print(f"\nmedians of {args.rounds} rounds, {args.mib} MiB in {args.part_mib} MiB parts:")
        heads = ("write MiB/s", "CPU s/GiB", "read MiB/s", "CPU s/GiB")
        print(f"  {'client':<16} " + " ".join(f"{head:>11}" for head in heads))
        for name, rounds in results.items():
            w, wc, r, rc = (statistics.median(f[i] for f in rounds) for i in range(4))
            print(
                f"  {name:<16} {args.mib / w:>11.1f} {wc / gib:>11.2f} "
                f"{args.mib / r:>11.1f} {rc / gib:>11.2f}"
            )
    finally:
        moto.terminate()
        moto.wait(10)


if __name__ == "__main__":
    main()
