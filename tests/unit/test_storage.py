"""Asset storage on a real disk (tmp_path): names, what only a disk has (paths that stay
inside the root, temporary files, files gc must not touch); and handlers' assets
through the whole runtime on the in-memory store, on the disk and on S3 (moto's
server) alike (real time: storage works in threads, which virtual time would skip
over). What every backend promises is the storage contract,
tests/storage/test_storage_contract.py."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from callboard import JobContext, JobStatus
from callboard.config import Settings, file_url
from callboard.errors import AssetNotFound, AssetTooLarge, StoreUnavailable
from callboard.jobs import EventType, new_id
from callboard.sizes import human_bytes
from callboard.storage.gc import collect_garbage
from callboard.storage.local import AssetStorage
from callboard.storage.names import (
    MAX_ORIGINAL_NAME,
    MAX_SAFE_NAME,
    ORPHAN_GRACE_SECONDS,
    clean_original,
    safe_filename,
)
from callboard.storage.writer import FLUSH_BYTES
from callboard.store.memory import MemoryStore
from s3kit import contents

pytestmark = pytest.mark.trio

COMPANY = "0b7e1a52-6c1d-4f0e-9a55-3f1f0e1d2c3b"
WHEN = datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def storage(tmp_path) -> AssetStorage:
    return AssetStorage(tmp_path / "assets", {"generated": 1000, "uploads": 100})


# --- names and messages ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/passwd", "etc_passwd"),
        ("a/b", "a_b"),
        ("a\\b", "a_b"),
        ("a\x00b.txt", "a_b.txt"),
        ("..", "file"),
        ("", "file"),
        (".bashrc", "file.bashrc"),
        ("-rf", "rf"),
        ("résumé.pdf", "resume.pdf"),
        ("报告.pdf", "file.pdf"),
        ("my file (1).tar.gz", "my_file_1.tar.gz"),
        ("evil\u202egnp.exe", "evil_gnp.exe"),
        ("x" * 10_000 + ".mp4", "x" * (MAX_SAFE_NAME - 4) + ".mp4"),
    ],
)
async def test_safe_filename(name, safe):
    assert safe_filename(name) == safe
    assert len(safe) <= MAX_SAFE_NAME and "/" not in safe and ".." not in safe


async def test_the_original_name_keeps_all_but_control_characters():
    assert clean_original("a\x00b\r\n\tc.txt") == "abc.txt"
    assert clean_original("../../etc/passwd") == "../../etc/passwd"
    assert clean_original("résumé \u202e.pdf") == "résumé \u202e.pdf"
    long = clean_original("y" * 10_000 + ".pdf")
    assert len(long) == MAX_ORIGINAL_NAME and long.endswith(".pdf")
    assert clean_original("bad\udcff") == "bad?"  # not UTF-8: replaced, storable


async def test_cap_messages_name_the_cap_in_words_and_bytes():
    assert str(AssetTooLarge("uploads", 10 * 1024 * 1024)) == (
        "asset exceeds the 10 MiB (10485760 bytes) limit for namespace 'uploads'"
    )
    assert "500 MiB (524288000 bytes)" in str(AssetTooLarge("generated", 524_288_000))
    assert [human_bytes(n) for n in (1, 100, 1536, 1 << 30)] == [
        "1 byte",
        "100 bytes",
        "1.5 KiB",
        "1 GiB",
    ]


# --- writing ----------------------------------------------------------------------------


async def test_hostile_filenames_stay_inside_their_directory(storage):
    for name in ("../../etc/passwd", "a/b", "nul\x00name", "z" * 10_000, "/abs", "..\\..\\x"):
        stored = await storage.put(COMPANY, "uploads", name, "text/plain", b"x")
        path = storage.path_of(stored.object_key)
        assert path.resolve().parent == (storage.root / stored.object_key).parent.resolve()
        assert path.resolve().is_relative_to(storage.root.resolve() / COMPANY / "uploads")
        assert len(path.name) <= 37 + MAX_SAFE_NAME
        assert "\x00" not in stored.original_filename
    for bad in ("../x", "/etc/passwd", f"{COMPANY}/uploads/../../../x", f"{COMPANY}/x"):
        with pytest.raises(ValueError, match="not an object key"):
            storage.path_of(bad)


async def test_a_failing_or_cancelled_source_leaves_no_file(storage):
    async def failing():
        yield b"x" * 10
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        await storage.put(COMPANY, "generated", "a", "text/plain", failing())

    async def slow():
        yield b"x" * 10
        await trio.sleep_forever()
        yield b"unreachable"  # pragma: no cover

    with trio.move_on_after(0.2) as scope:
        await storage.put(COMPANY, "generated", "b", "text/plain", slow())
    assert scope.cancelled_caught
    async with storage.open_writer(COMPANY, "generated", "c", "text/plain") as writer:
        await writer.write(b"abc")
        temp = writer.temp_path
        assert temp.exists() and temp.name.startswith(".") and temp.name.endswith(".part")
    assert writer.stored is not None and not temp.exists()
    assert files_under(storage.root) == [storage.path_of(writer.stored.object_key)]


# --- gc ---------------------------------------------------------------------------------


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_gc_deletes_old_orphans_and_keeps_referenced_young_and_foreign(storage):
    store = MemoryStore()
    await store.open()
    company = (await store.create_company("acme", WHEN)).id
    put = storage.put
    referenced = await put(company, "uploads", "kept.txt", "text/plain", b"kept")
    orphan = await put(company, "generated", "orphan.bin", "text/plain", b"orphan!")
    young = await put(company, "generated", "young.bin", "text/plain", b"young")
    await store.insert_asset(
        referenced.as_asset(company, source_task_id=None, created_by_job_id=None, created_at=WHEN)
    )
    day = storage.path_of(orphan.object_key).parent
    stale_part = day / f".{new_id()}-crashed.bin.part"
    stale_part.write_bytes(b"half")
    foreign = [day / "notes.txt", storage.root / "README", storage.root / "x" / "y"]
    for path in foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not ours")
    for path in [*files_under(storage.root)]:
        if path != storage.path_of(young.object_key):
            age(path, ORPHAN_GRACE_SECONDS + 60)

    dry = await collect_garbage(storage, store, dry_run=True)
    assert dry.deleted_count == 2 and storage.path_of(orphan.object_key).exists()
    report = await collect_garbage(storage, store)
    assert report.scanned == 4 and report.referenced == 1 and report.too_young == 1
    assert report.deleted_count == 2 and report.deleted_bytes == len(b"orphan!") + 4
    assert sorted(report.deleted) == sorted(
        [orphan.object_key, str(stale_part.relative_to(storage.root))]
    )
    remaining = set(files_under(storage.root))
    assert storage.path_of(referenced.object_key) in remaining
    assert storage.path_of(young.object_key) in remaining
    assert set(foreign) <= remaining
    assert storage.path_of(orphan.object_key) not in remaining and not stale_part.exists()
    assert report.to_dict()["deletedFiles"] == 2
    assert (await collect_garbage(storage, store)).deleted_count == 0


# --- handlers' assets through the runtime -------------------------------------------------


async def until(predicate, within: float = 10) -> None:
    with trio.fail_after(within):
        while True:
            if predicate():
                return
            await trio.sleep(0.01)


@pytest.fixture(params=["file", "s3"])
def asset_storage(request, tmp_path) -> str:
    """Where the runtime's assets go: a directory, or a bucket."""
    if request.param == "file":
        return file_url(tmp_path / "assets")
    return request.getfixturevalue("s3_url")


#: A test of the files on the local disk: it runs on that storage only.
local_only = pytest.mark.parametrize("asset_storage", ["file"], indirect=True)


@pytest.fixture
def asset_board(make_board, asset_storage):
    def make(**kwargs):
        kwargs.setdefault("settings", Settings(storage_url=asset_storage))
        kwargs.setdefault("generated_asset_max_bytes", 4 * FLUSH_BYTES)
        kwargs.setdefault("attachment_max_bytes", 1000)
        return make_board(**kwargs)

    return make


async def test_saved_assets_are_linked_and_the_last_is_the_result(asset_board):
    board = asset_board()

    @board.handler("render")
    async def render(ctx: JobContext) -> None:
        first = await ctx.save_asset("scene.svg", "image/svg+xml", b"<svg/>")
        async with ctx.open_asset("video.mp4", "video/mp4") as out:
            for _ in range(3):
                await out.write(b"\x00\x01" * 1000)
        await ctx.save_asset("thumb.png", "image/png", [b"\x89PNG"], result=False)
        assert await ctx.read_asset(first.id) == b"<svg/>"  # not committed yet, readable
        assert out.asset is not None and out.asset.byte_size == 6000

    async with board.running() as rt:
        company = await rt.create_company("acme")
        job = await rt.submit(company.id, "render", source_task_id="task-7")
        done = await rt.wait(job.id, timeout=10)
        assert done.status is JobStatus.DONE, done.error_message
        page = await rt.list_assets(company.id, source_task_id="task-7")
        by_name = {a.original_filename: a for a in page.items}
        assert set(by_name) == {"scene.svg", "video.mp4", "thumb.png"}
        assert done.result_asset_id == by_name["video.mp4"].id
        for asset in page.items:
            assert asset.namespace == "generated" and asset.created_by_job_id == job.id
            assert asset.company_id == company.id and asset.source_task_id == "task-7"
            data = await rt.storage.read_bytes(asset.object_key)
            assert hashlib.sha256(data).hexdigest() == asset.sha256
            assert len(data) == asset.byte_size
        assert (await rt.list_assets(company.id, job_id=job.id)).items == page.items


async def test_over_the_cap_the_job_fails_and_keeps_nothing(asset_board, asset_storage):
    board = asset_board()

    @board.handler("too.big")
    async def too_big(ctx: JobContext) -> None:
        await ctx.save_asset("ok.txt", "text/plain", b"fine")
        await ctx.save_asset("huge.bin", "application/octet-stream", b"x" * (4 * FLUSH_BYTES + 1))

    @board.handler("breaks")
    async def breaks(ctx: JobContext) -> None:
        await ctx.save_asset("partial.txt", "text/plain", b"part one")
        raise RuntimeError("renderer crashed")

    async with board.running() as rt:
        company = await rt.create_company("acme")
        failed = await rt.wait((await rt.submit(company.id, "too.big")).id, timeout=10)
        assert failed.status is JobStatus.FAILED
        assert failed.error_message == (
            "asset exceeds the 4 MiB (4194304 bytes) limit for namespace 'generated'"
        )
        broken = await rt.wait((await rt.submit(company.id, "breaks")).id, timeout=10)
        assert broken.error_message == "renderer crashed"
        assert (await rt.list_assets(company.id)).items == []
        assert failed.result_asset_id is None
    assert contents(asset_storage) == []


async def test_read_asset_is_company_checked(asset_board):
    board = asset_board()
    seen: dict[str, bytes] = {}

    @board.handler("reader")
    async def reader(ctx: JobContext) -> None:
        seen[ctx.job_id] = await ctx.read_asset(ctx.input["asset"])

    async with board.running() as rt:
        acme = await rt.create_company("acme")
        globex = await rt.create_company("globex")
        upload = await rt.upload_asset(acme.id, "brief.txt", "text/plain", b"the brief")
        assert upload.namespace == "uploads" and upload.created_by_job_id is None
        ok = await rt.wait((await rt.submit(acme.id, "reader", {"asset": upload.id})).id, 10)
        assert ok.status is JobStatus.DONE and seen[ok.id] == b"the brief"
        theirs = await rt.submit(globex.id, "reader", {"asset": upload.id})
        refused = await rt.wait(theirs.id, 10)
        assert refused.status is JobStatus.FAILED
        assert refused.error_message == f"asset {upload.id!r} not found"
        with pytest.raises(AssetNotFound):
            await rt.get_asset(upload.id, globex.id)
        with pytest.raises(AssetTooLarge, match="'uploads'"):
            await rt.upload_asset(acme.id, "big.txt", "text/plain", b"x" * 1001)
        assert len((await rt.list_assets(acme.id)).items) == 1


async def test_a_cancelled_job_keeps_none_of_its_files(asset_board, asset_storage):
    board = asset_board()
    saved = trio.Event()

    @board.handler("stuck")
    async def stuck(ctx: JobContext) -> None:
        await ctx.save_asset("early.txt", "text/plain", b"early output")
        saved.set()
        async with ctx.open_asset("late.txt", "text/plain") as out:
            await out.write(b"half")
            await trio.sleep_forever()

    async with board.running() as rt:
        company = await rt.create_company("acme")
        job = await rt.submit(company.id, "stuck")
        with trio.fail_after(10):
            await saved.wait()
        await rt.cancel(job.id)
        assert (await rt.wait(job.id, 10)).status is JobStatus.CANCELLED
        assert (await rt.list_assets(company.id)).items == []
    assert contents(asset_storage) == []


async def test_a_result_and_a_result_asset_are_both_kept_and_a_refused_result_keeps_neither(
    asset_board, asset_storage
):
    board = asset_board(result_max_bytes=64)

    @board.handler("report")
    async def report(ctx: JobContext) -> dict:
        asset = await ctx.save_asset("report.pdf", "application/pdf", b"%PDF-")
        return {"assetId": asset.id, "pages": 3} if ctx.input.get("small") else {"x": "y" * 64}

    async with board.running() as rt:
        company = await rt.create_company("acme")
        done = await rt.wait((await rt.submit(company.id, "report", {"small": 1})).id, 10)
        assert done.status is JobStatus.DONE
        assert done.result == {"assetId": done.result_asset_id, "pages": 3}
        [kept] = (await rt.list_assets(company.id)).items
        assert kept.id == done.result_asset_id
        failed = await rt.wait((await rt.submit(company.id, "report")).id, 10)
        assert failed.status is JobStatus.FAILED and failed.result is None
        assert failed.result_asset_id is None
        assert failed.error_message.startswith("the result is 72 bytes of JSON;")
        assert (await rt.list_assets(company.id)).items == [kept]
    assert len(contents(asset_storage)) == 1


async def test_demo_render_writes_what_it_was_asked(asset_board):
    board = asset_board()
    size = 3 * FLUSH_BYTES + 5
    async with board.running() as rt:
        company = await rt.create_company("acme")
        job = await rt.submit(
            company.id, "demo.render", {"bytes": size, "chunk": 65536, "contentType": "image/png"}
        )
        done = await rt.wait(job.id, timeout=20)
        assert done.status is JobStatus.DONE, done.error_message
        asset = await rt.get_asset(done.result_asset_id, company.id)
        assert asset.byte_size == size and asset.content_type == "image/png"
        assert asset.original_filename == "render.png"
        seed = job.id.encode()
        block = (seed * (65536 // len(seed) + 1))[:65536]
        expected = hashlib.sha256()
        for start in range(0, size, 65536):
            expected.update(block[: min(65536, size - start)])
        assert asset.sha256 == expected.hexdigest()
        events = await rt.store.events_after(0, job_id=job.id)
        assert any(e.type == EventType.PROGRESS for e in events)
        assert done.progress.percent == 100
        bad = await rt.submit(company.id, "demo.render", {"bytes": -1})
        assert "input.bytes" in (await rt.wait(bad.id, 10)).error_message


async def test_shutdown_mid_job_deletes_the_jobs_files(asset_board, asset_storage):
    board = asset_board(shutdown_grace=0.1)
    saved = trio.Event()

    @board.handler("forever")
    async def forever(ctx: JobContext) -> None:
        await ctx.save_asset("early.txt", "text/plain", b"early")
        saved.set()
        await trio.sleep_forever()

    async with board.running() as rt:
        company = await rt.create_company("acme")
        await rt.submit(company.id, "forever")
        with trio.fail_after(10):
            await saved.wait()
        assert len(contents(asset_storage)) == 1
    # Drained, then cancelled: no row was written, so the file went too.
    assert contents(asset_storage) == []


async def test_an_unrecorded_outcome_leaves_the_files_to_gc(asset_board, asset_storage):
    store = MemoryStore()
    board = asset_board(store=store, lease_seconds=1.0)

    @board.handler("unlucky")
    async def unlucky(ctx: JobContext) -> None:
        await ctx.save_asset("out.txt", "text/plain", b"output")
        store.set_available(False)  # the store goes away as the job finishes

    async with board.running() as rt:
        company = await rt.create_company("acme")
        job = await rt.submit(company.id, "unlucky")
        await until(lambda: rt.worker_states()[0].job_id == job.id)
        await until(lambda: rt.worker_states()[0].job_id is None)
        # Whether "done" committed is unknown to the worker: it must not delete a file
        # a row may point at. With no row, gc takes it once it is old enough.
        [left] = contents(asset_storage)
        store.set_available(True)
        assert (await rt.get(job.id)).status is JobStatus.RUNNING
        report = await collect_garbage(rt.storage, store, older_than=0)
        assert report.deleted_count == 1 and report.deleted == [left]
        assert contents(asset_storage) == []


@local_only  # it ages the file by its mtime, which S3 does not let a client set
async def test_a_running_job_keeps_its_uncommitted_files_fresh(asset_board, monkeypatch):
    monkeypatch.setattr("callboard.actors.job_assets.KEEP_FRESH_SECONDS", 0.05)
    board = asset_board()
    keys: list[str] = []
    release = trio.Event()

    @board.handler("long")
    async def long(ctx: JobContext) -> None:
        keys.append((await ctx.save_asset("early.txt", "text/plain", b"early")).object_key)
        await release.wait()

    async with board.running() as rt:
        company = await rt.create_company("acme")
        job = await rt.submit(company.id, "long")
        await until(lambda: keys)
        path = rt.storage.path_of(keys[0])
        age(path, ORPHAN_GRACE_SECONDS * 2)
        await until(lambda: time.time() - os.stat(path).st_mtime < 60)  # touched again
        release.set()
        assert (await rt.wait(job.id, 10)).status is JobStatus.DONE


async def test_catching_the_cap_error_inside_open_asset_still_fails_with_the_cap(
    asset_board, asset_storage
):
    board = asset_board()

    @board.handler("stubborn")
    async def stubborn(ctx: JobContext) -> None:
        async with ctx.open_asset("big.bin", "application/octet-stream") as out:
            try:
                await out.write(b"x" * (4 * FLUSH_BYTES + 1))
            except AssetTooLarge:
                pass  # and leave the block as if all were well

    async with board.running() as rt:
        company = await rt.create_company("acme")
        failed = await rt.wait((await rt.submit(company.id, "stubborn")).id, timeout=10)
    assert failed.status is JobStatus.FAILED
    assert failed.error_message == (
        "asset exceeds the 4 MiB (4194304 bytes) limit for namespace 'generated'"
    )
    assert contents(asset_storage) == []


async def test_read_asset_refuses_what_would_not_fit_in_memory(asset_board):
    board = asset_board()  # uploads cap: 1,000 bytes

    @board.handler("make.and.read")
    async def make_and_read(ctx: JobContext) -> None:
        big = await ctx.save_asset("big.bin", "application/octet-stream", b"x" * 2000)
        await ctx.read_asset(big.id)

    async with board.running() as rt:
        company = await rt.create_company("acme")
        failed = await rt.wait((await rt.submit(company.id, "make.and.read")).id, timeout=10)
    assert failed.status is JobStatus.FAILED
    assert "read_asset reads at most" in failed.error_message
    assert "(1000 bytes)" in failed.error_message


class LostAnswerOnComplete(MemoryStore):
    """Commits the first completion, then raises as if the connection dropped before
    the answer came back (a PostgreSQL COMMIT whose reply was lost)."""

    lost = False

    async def complete(self, job_id, lease_owner, now, *args, **kwargs):
        event = await super().complete(job_id, lease_owner, now, *args, **kwargs)
        if not self.lost:
            self.lost = True
            raise StoreUnavailable("connection lost after COMMIT")
        return event


async def test_a_completion_whose_answer_was_lost_keeps_its_files(asset_board):
    # Real time: the asset writes run in threads (the store retry waits 0.1 s).
    store = LostAnswerOnComplete()
    board = asset_board(store=store)

    @board.handler("render")
    async def render(ctx: JobContext) -> None:
        await ctx.save_asset("scene.svg", "image/svg+xml", b"<svg/>")

    async with board.running() as rt:
        company = await rt.create_company("acme")
        job = await rt.submit(company.id, "render")
        done = await rt.wait(job.id, timeout=60)
        await rt.drain(60)  # the worker has finished with the job, retry included
        assert store.lost and done.status is JobStatus.DONE
        [asset] = (await rt.list_assets(company.id, job_id=job.id)).items
        # The retry found the job done already; the files its rows point at stay.
        assert await rt.storage.read_bytes(asset.object_key) == b"<svg/>"
