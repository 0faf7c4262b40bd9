"""The storage contract: what `AssetStorage` promises on every backend, run on each one
against the real thing (a directory in tmp_path; moto's S3 server over HTTP). What
is checked goes through the backend's own listing (`scan`, which gc uses), so "nothing
is left behind" covers a local temporary file and an unfinished multipart upload alike.
What only one backend has (paths, fsync, presigned URLs) is tested beside that backend.
Real time: storage works in worker threads, which virtual time would skip over."""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc
from contextlib import aclosing
from datetime import UTC, datetime

import pytest
import trio

from callboard.errors import AssetTooLarge, InvalidRequest, StorageUnavailable
from callboard.storage import s3
from callboard.storage.gc import collect_garbage
from callboard.storage.location import open_storage
from callboard.storage.names import (
    MAX_SAFE_NAME,
    OBJECT_KEY,
    ORPHAN_GRACE_SECONDS,
    new_object_key,
)
from callboard.storage.writer import FLUSH_BYTES, AssetStorage
from callboard.store.memory import MemoryStore

pytestmark = pytest.mark.trio

COMPANY = "0b7e1a52-6c1d-4f0e-9a55-3f1f0e1d2c3b"
WHEN = datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
#: Enough to take the S3 backend through a multipart upload of three parts.
BIG = 2 * s3.PART_BYTES + 3 * FLUSH_BYTES + 7

BACKENDS = ["file", "s3"]


@pytest.fixture(params=BACKENDS)
def make_storage(request, tmp_path):
    """A function making storage with the given caps on the parametrized backend."""
    if request.param == "file":
        url = (tmp_path / "assets").as_uri()
    else:
        url = request.getfixturevalue("s3_url")

    def make(generated: int = 1000, uploads: int = 100) -> AssetStorage:
        return open_storage(url, {"generated": generated, "uploads": uploads})

    return make


@pytest.fixture
def storage(make_storage) -> AssetStorage:
    return make_storage()


async def leftovers(storage: AssetStorage) -> list[tuple[str, bool]]:
    """Everything of the layout the backend holds: (key, unfinished write?)."""
    found = []
    async with aclosing(storage.backend.scan(100)) as batches:
        async for batch in batches:
            found += [(item.key, item.temporary) for item in batch]
    return sorted(found)


async def read(storage: AssetStorage, key: str, start: int = 0, length: int | None = None):
    async with aclosing(storage.read_chunks(key, start, length)) as chunks:
        return b"".join([chunk async for chunk in chunks])


# --- writing ----------------------------------------------------------------------------


async def test_put_streams_into_the_layout(storage):
    async def gen():
        yield b"hello "
        yield bytearray(b"big ")
        yield memoryview(b"world")

    keys = []
    for chunks in (b"hello big world", [b"hello ", b"big ", b"world"], gen()):
        stored = await storage.put(COMPANY, "uploads", "Hi.txt", "text/plain", chunks, now=WHEN)
        assert stored.byte_size == 15
        assert stored.sha256 == hashlib.sha256(b"hello big world").hexdigest()
        assert stored.content_type == "text/plain" and stored.original_filename == "Hi.txt"
        prefix = f"{COMPANY}/uploads/2031/02/03/"
        assert stored.object_key.startswith(prefix) and stored.object_key.endswith("-Hi.txt")
        assert await read(storage, stored.object_key) == b"hello big world"
        keys.append((stored.object_key, False))
    assert await leftovers(storage) == sorted(keys)  # one object each, nothing unfinished


async def test_big_and_empty_objects_hash_alike_however_they_are_chunked(make_storage):
    storage = make_storage(generated=4 * s3.PART_BYTES)
    data = os.urandom(BIG)
    whole = await storage.put(COMPANY, "generated", "a", "application/octet-stream", data)
    pieces = [data[i : i + 100_000] for i in range(0, len(data), 100_000)]
    small = await storage.put(COMPANY, "generated", "b", "application/octet-stream", pieces)
    assert whole.sha256 == small.sha256 == hashlib.sha256(data).hexdigest()
    assert whole.byte_size == small.byte_size == BIG
    assert await read(storage, small.object_key) == data
    # Exactly whole parts, and nothing at all.
    exact = await storage.put(
        COMPANY, "generated", "c", "application/octet-stream", data[: s3.PART_BYTES]
    )
    assert await read(storage, exact.object_key) == data[: s3.PART_BYTES]
    empty = await storage.put(COMPANY, "generated", "d", "text/plain", b"")
    assert empty.byte_size == 0 and empty.sha256 == hashlib.sha256(b"").hexdigest()
    assert await read(storage, empty.object_key) == b""
    assert [temporary for _, temporary in await leftovers(storage)] == [False] * 4


async def test_memory_stays_about_two_parts_whatever_the_size(make_storage):
    """Streaming: a write holds its flush buffer and (on S3) one part, never the object."""
    storage = make_storage(generated=1 << 30)
    size = 6 * s3.PART_BYTES
    chunk = os.urandom(256 << 10)

    async def source():
        for _ in range(size // len(chunk)):
            yield chunk

    tracemalloc.start()
    try:
        stored = await storage.put(COMPANY, "generated", "big.bin", "video/mp4", source())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.byte_size == size
    assert peak < 3 * s3.PART_BYTES, f"a {size >> 20} MiB write peaked at {peak >> 20} MiB"


async def test_the_cap_is_checked_while_streaming(storage):
    exactly = await storage.put(COMPANY, "uploads", "full", "text/plain", [b"x" * 60, b"y" * 40])
    assert exactly.byte_size == 100
    closed = []

    async def over():
        try:
            yield b"x" * 60
            yield b"y" * 41
            yield b"never asked for"
        finally:
            closed.append(True)

    with pytest.raises(AssetTooLarge) as info:
        await storage.put(COMPANY, "uploads", "over", "text/plain", over())
    assert str(info.value) == (
        "asset exceeds the 100 bytes (100 bytes) limit for namespace 'uploads'"
    )
    assert (info.value.namespace, info.value.limit) == ("uploads", 100)
    assert closed == [True]
    assert await leftovers(storage) == [(exactly.object_key, False)]


async def test_over_the_cap_after_parts_were_uploaded_leaves_nothing(make_storage):
    cap = 2 * s3.PART_BYTES + 1
    storage = make_storage(generated=cap)
    with pytest.raises(AssetTooLarge):
        await storage.put(COMPANY, "generated", "huge", "text/plain", [b"z" * FLUSH_BYTES] * 20)
    assert await leftovers(storage) == []


@pytest.mark.parametrize(
    ("args", "error", "words"),
    [
        (("videos", "a", "text/plain", b"x"), InvalidRequest, "unknown asset namespace"),
        (("uploads", "a", "text\r\nX-Evil: 1", b"x"), InvalidRequest, "media type"),
        (("uploads", "a", "", b"x"), InvalidRequest, "media type"),
        (("uploads", 7, "text/plain", b"x"), InvalidRequest, "filename"),
        (("uploads", "a", "text/plain", "text"), TypeError, "not str"),
        (("uploads", "a", "text/plain", [b"ok", 12]), TypeError, "not int"),
    ],
)
async def test_bad_arguments_leave_nothing(storage, args, error, words):
    with pytest.raises(error, match=words):
        await storage.put(COMPANY, *args)
    with pytest.raises(InvalidRequest, match="uuid"):
        await storage.put("../../etc", "uploads", "a", "text/plain", b"x")
    assert await leftovers(storage) == []


async def test_hostile_names_make_keys_of_the_layout(storage):
    names = ("../../etc/passwd", "a/b", "nul\x00name", "z" * 10_000, "/abs", "..\\..\\x", "报告")
    for name in names:
        stored = await storage.put(COMPANY, "uploads", name, "text/plain", b"x")
        assert OBJECT_KEY.fullmatch(stored.object_key)
        assert stored.object_key.startswith(f"{COMPANY}/uploads/")
        assert len(stored.object_key.rsplit("/", 1)[1]) <= 37 + MAX_SAFE_NAME
        assert "\x00" not in stored.original_filename
        assert await read(storage, stored.object_key) == b"x"
    for bad in ("../x", "/etc/passwd", f"{COMPANY}/uploads/../../../x", f"{COMPANY}/x"):
        with pytest.raises(ValueError, match="not an object key"):
            await storage.exists(bad)
    assert len(await leftovers(storage)) == len(names)


async def test_a_failing_or_cancelled_source_leaves_nothing(make_storage):
    storage = make_storage(generated=4 * s3.PART_BYTES)

    async def failing():
        # Past the first part: on S3 a multipart upload is under way when it fails.
        yield b"x" * (s3.PART_BYTES + FLUSH_BYTES)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        await storage.put(COMPANY, "generated", "a", "text/plain", failing())

    started = trio.Event()

    async def stalled():
        yield b"x" * (s3.PART_BYTES + FLUSH_BYTES)
        started.set()
        await trio.sleep_forever()
        yield b"unreachable"  # pragma: no cover

    async with trio.open_nursery() as nursery:

        async def put() -> None:
            await storage.put(COMPANY, "generated", "b", "text/plain", stalled())

        nursery.start_soon(put)
        await started.wait()
        assert [temporary for _, temporary in await leftovers(storage)] == [True]
        nursery.cancel_scope.cancel()
    assert await leftovers(storage) == []


# --- reading ----------------------------------------------------------------------------


async def test_ranges_read_exactly_what_was_asked(make_storage):
    storage = make_storage(generated=4 * s3.PART_BYTES)
    data = os.urandom(3 * FLUSH_BYTES + 11)
    key = (await storage.put(COMPANY, "generated", "r.bin", "text/plain", data)).object_key
    for start, length in [(0, None), (0, 1), (5, 10), (FLUSH_BYTES - 3, 7), (len(data) - 1, 1)]:
        end = None if length is None else start + length
        assert await read(storage, key, start, length) == data[start:end], (start, length)
    assert await read(storage, key, 7) == data[7:]
    assert await read(storage, key, 3, 0) == b""


async def test_exists_and_delete(storage):
    stored = await storage.put(COMPANY, "uploads", "d.txt", "text/plain", b"bye")
    assert await storage.exists(stored.object_key)
    await storage.delete(stored.object_key)
    assert not await storage.exists(stored.object_key)
    await storage.delete(stored.object_key)  # gone already: no error
    assert await leftovers(storage) == []
    with pytest.raises(FileNotFoundError):
        await read(storage, stored.object_key)


# --- gc ---------------------------------------------------------------------------------


async def test_gc_deletes_old_orphans_and_unfinished_writes_and_keeps_the_rest(make_storage):
    storage = make_storage(generated=4 * s3.PART_BYTES)
    store = MemoryStore()
    await store.open()
    company = (await store.create_company("acme", WHEN)).id
    referenced = await storage.put(company, "uploads", "kept.txt", "text/plain", b"kept")
    orphan = await storage.put(company, "generated", "orphan.bin", "text/plain", b"orphan!")
    await store.insert_asset(
        referenced.as_asset(company, source_task_id=None, created_by_job_id=None, created_at=WHEN)
    )
    # A write that never finished (a crash): begun below the common layer, past its
    # first part, and never committed or aborted.
    key = new_object_key(company, "generated", "crashed.bin", datetime.now(UTC))
    crashed = await storage.backend.start_write(key, hashlib.sha256().update)
    for _ in range((s3.PART_BYTES + FLUSH_BYTES) // FLUSH_BYTES):
        await crashed.write(b"h" * FLUSH_BYTES)
    unfinished = [key for key, temporary in await leftovers(storage) if temporary]
    assert len(unfinished) == 1

    # Everything is young now: nothing goes.
    young = await collect_garbage(storage, store)
    assert young.deleted_count == 0 and young.too_young == 2 and young.referenced == 1

    later = time.time() + ORPHAN_GRACE_SECONDS + 60
    dry = await collect_garbage(storage, store, dry_run=True, now=later)
    assert dry.deleted_count == 2 and await storage.exists(orphan.object_key)
    report = await collect_garbage(storage, store, now=later)
    assert report.scanned == 3 and report.referenced == 1 and report.too_young == 0
    assert sorted(report.deleted) == sorted([orphan.object_key, *unfinished])
    assert await leftovers(storage) == [(referenced.object_key, False)]
    assert (await collect_garbage(storage, store, now=later)).deleted_count == 0
    assert await read(storage, referenced.object_key) == b"kept"
    # What gc took from the crashed write is gone for good: it cannot be completed.
    with pytest.raises((OSError, StorageUnavailable)):
        await crashed.commit()
    assert not await storage.exists(key)


# --- what only S3 does ----------------------------------------------------------------


async def test_keep_young_renews_objects_on_s3_by_copying_them_onto_themselves(s3_url, s3_endpoint):
    import s3kit

    storage = open_storage(s3_url, {"generated": 4 * s3.PART_BYTES, "uploads": 100})
    data = os.urandom(s3.PART_BYTES + 5)
    stored = await storage.put(COMPANY, "generated", "kept.bin", "text/plain", data)
    bucket, _, prefix = s3_url.removeprefix("s3://").partition("/")
    client = s3kit.client(s3_endpoint)
    full_key = f"{prefix}/{stored.object_key}"
    assert client.head_object(Bucket=bucket, Key=full_key)["Metadata"] == {}
    async with storage.open_writer(COMPANY, "generated", "w.bin", "text/plain") as writer:
        await writer.write(b"w" * FLUSH_BYTES)
        await storage.keep_young([stored.object_key], [writer])
    head = client.head_object(Bucket=bucket, Key=full_key)
    assert abs(int(head["Metadata"]["touched"]) - time.time()) < 60
    assert await read(storage, stored.object_key) == data  # the same bytes
    # A key that is gone is skipped, not an error.
    await storage.delete(stored.object_key)
    await storage.keep_young([stored.object_key], [])
    assert not await storage.exists(stored.object_key)
