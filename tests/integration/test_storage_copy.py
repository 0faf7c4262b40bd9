"""`callboard storage copy`: every asset to another backend, verified, resumable.

Real everywhere: nodes started as `callboard serve` subprocesses upload the assets (or
`AssetStorage` writes them with their rows into a real SQLite store), the command runs
as the installed console script, and S3 is moto's server (`s3_url`). The in-process
tests drive `AssetCopy` over the real backends to interrupt it mid-write.
"""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
from cli_kit import CALLBOARD
from serve_process import serve

import s3kit
from callboard.client import Client
from callboard.config import parse_s3_url
from callboard.jobs import Asset
from callboard.sizes import human_bytes
from callboard.storage import local
from callboard.storage.copy import AssetCopy, Outcome
from callboard.storage.names import NAMESPACES
from callboard.storage.s3 import S3Backend
from callboard.store.sqlite import SqliteStore

pytestmark = pytest.mark.slow

CAPS = dict.fromkeys(NAMESPACES, 1 << 30)
MiB = 1 << 20
PARALLEL_1 = ("--parallel", "1")


# --- helpers -----------------------------------------------------------------------------


def copy_cli(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CALLBOARD, "storage", "copy", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=clean_env(),
    )


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CALLBOARD_")}


def fill(data_dir: Path, sizes: list[int]) -> list[tuple[Asset, bytes]]:
    """A node's data dir as `serve` leaves it: objects under `assets/`, written by
    AssetStorage, and their rows in `callboard.db`."""

    async def main() -> list[tuple[Asset, bytes]]:
        storage = local.AssetStorage(data_dir / "assets", CAPS)
        made = []
        async with SqliteStore(data_dir / "callboard.db").opened() as store:
            company = await store.create_company("acme", datetime.now(UTC))
            for i, size in enumerate(sizes):
                data = os.urandom(size)
                stored = await storage.put(company.id, "uploads", f"f{i}.bin", "x/y", data)
                row = stored.as_asset(
                    company.id,
                    source_task_id=None,
                    created_by_job_id=None,
                    created_at=datetime.now(UTC),
                )
                made.append((await store.insert_asset(row), data))
        return made

    return trio.run(main)


def bucket_and_prefix(s3_url: str) -> tuple[str, str]:
    location = parse_s3_url(s3_url)
    return location.bucket, location.prefix


def s3_objects(endpoint: str, s3_url: str) -> dict[str, bytes]:
    bucket, prefix = bucket_and_prefix(s3_url)
    client = s3kit.client(endpoint)
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            found[item["Key"].removeprefix(prefix + "/")] = body
    return found


def multipart_uploads(endpoint: str, s3_url: str) -> list[Any]:
    bucket, _ = bucket_and_prefix(s3_url)
    return s3kit.client(endpoint).list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def files_under(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def lines_starting(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(word + " ")]


def report_count(stdout: str, name: str) -> int:
    for line in stdout.splitlines():
        if line.strip().startswith(name + ":"):
            return int(line.split(":", 1)[1].split()[0])
    raise AssertionError(f"no {name!r} in the report:\n{stdout}")


# --- through real nodes ------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_assets_of_a_real_node_go_to_s3_and_back(tmp_path, s3_url, s3_endpoint):
    sources = {
        "brief.txt": os.urandom(300_000),
        "empty.bin": b"",
        "scan.pdf": os.urandom(9 * MiB),  # more than one S3 part
    }
    for name, data in sources.items():
        (tmp_path / name).write_bytes(data)
    with serve(tmp_path, "--workers", "1") as node, Client(node.url, node.token) as client:
        company = client.create_company("acme")["id"]
        assets = [client.upload(tmp_path / name, company) for name in sources]
        job = client.submit(company, "demo.render", {"bytes": 3 * MiB + 5})
        done = client.wait(job.job_id, timeout=60)
        assert done.result_asset_id is not None
        assets.append(client.asset(done.result_asset_id, company))
    data_dir = tmp_path / "callboard-data"
    originals = {a.object_key: (data_dir / "assets" / a.object_key).read_bytes() for a in assets}
    assert len(originals) == 4

    to_s3 = copy_cli(tmp_path, "--data-dir", str(data_dir), "--to", s3_url)
    assert to_s3.returncode == 0, to_s3.stderr
    assert sorted(lines_starting(to_s3.stdout, "copied")) == sorted(
        f"copied {key}" for key in originals
    )
    assert report_count(to_s3.stdout, "copied") == 4
    assert to_s3.stdout.rstrip().endswith(f"every asset is in {s3_url}, verified by sha256")
    assert s3_objects(s3_endpoint, s3_url) == originals
    assert multipart_uploads(s3_endpoint, s3_url) == []

    # A node on the bucket serves every asset: what the switch-over is for.
    (data_dir / "assets").rename(tmp_path / "old-assets")
    with serve(tmp_path, "--workers", "0", "--storage-url", s3_url) as node:
        with Client(node.url, node.token) as client:
            for asset in assets:
                got = client.download(asset.id, tmp_path / "down", company=asset.company_id)
                assert Path(got.path).read_bytes() == originals[asset.object_key]
                Path(got.path).unlink()

    back = tmp_path / "back"
    to_file = copy_cli(
        tmp_path, "--data-dir", str(data_dir), "--storage-url", s3_url, "--to", back.as_uri()
    )
    assert to_file.returncode == 0, to_file.stderr
    assert report_count(to_file.stdout, "copied") == 4
    assert files_under(back) == originals


@pytest.mark.timeout(200)
def test_a_postgres_installation_moves_while_its_node_runs(tmp_path, pg_url, s3_url, s3_endpoint):
    """The README's switch-over on PostgreSQL: copy while the node runs, restart it on
    the bucket, copy again for what was written meanwhile."""
    for name in ("a.bin", "b.bin", "late.bin"):
        (tmp_path / name).write_bytes(os.urandom(100_000))
    uploaded = []
    with serve(tmp_path, "--database", pg_url, "--workers", "0") as node:
        with Client(node.url, node.token) as client:
            company = client.create_company("acme")["id"]
            uploaded += [client.upload(tmp_path / n, company) for n in ("a.bin", "b.bin")]
            first = copy_cli(tmp_path, "--database", pg_url, "--to", s3_url)
            assert first.returncode == 0, first.stderr
            assert report_count(first.stdout, "copied") == 2
            uploaded.append(client.upload(tmp_path / "late.bin", company))
    with serve(tmp_path, "--database", pg_url, "--workers", "0", "--storage-url", s3_url) as node:
        again = copy_cli(tmp_path, "--database", pg_url, "--to", s3_url)
        assert again.returncode == 0, again.stderr
        assert lines_starting(again.stdout, "copied") == [f"copied {uploaded[2].object_key}"]
        assert report_count(again.stdout, "already there") == 2
        with Client(node.url, node.token) as client:
            for asset, name in zip(uploaded, ("a.bin", "b.bin", "late.bin"), strict=True):
                got = client.download(asset.id, tmp_path / "down", company=asset.company_id)
                assert Path(got.path).read_bytes() == (tmp_path / name).read_bytes()
                Path(got.path).unlink()


def test_the_store_of_a_running_sqlite_node_is_refused_in_one_line(tmp_path):
    with serve(tmp_path, "--workers", "0") as node:
        result = copy_cli(tmp_path, "--data-dir", str(node.data_dir), "--to", s3_like(tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("callboard: stop the node first: the database ")
    assert "is in use by another callboard process" in result.stderr


def s3_like(tmp_path: Path) -> str:
    return (tmp_path / "elsewhere").as_uri()


# --- resuming ----------------------------------------------------------------------------


def test_an_interrupted_copy_resumes_where_it_stopped(tmp_path, s3_url, s3_endpoint):
    data_dir = tmp_path / "data"
    made = fill(data_dir, [MiB] * 40)
    with subprocess.Popen(
        [CALLBOARD, "storage", "copy", "--data-dir", str(data_dir), "--to", s3_url, *PARALLEL_1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=clean_env(),
    ) as proc:
        assert proc.stdout is not None
        head = [proc.stdout.readline(), proc.stdout.readline()]
        assert head[1].startswith("copied "), head
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "callboard: interrupted; run the same command to go on"
    out = "".join(head) + rest
    first = len(lines_starting(out, "copied"))
    assert 1 <= first < 40
    assert report_count(out, "copied") == first
    # Nothing half-written: only whole objects, each one of the rows'.
    expected = {row.object_key: data for row, data in made}
    in_bucket = s3_objects(s3_endpoint, s3_url)
    assert all(expected[key] == data for key, data in in_bucket.items())
    assert len(in_bucket) >= first

    again = copy_cli(tmp_path, "--data-dir", str(data_dir), "--to", s3_url)
    assert again.returncode == 0, again.stderr
    assert report_count(again.stdout, "already there") == len(in_bucket)
    assert report_count(again.stdout, "copied") == 40 - len(in_bucket)
    assert s3_objects(s3_endpoint, s3_url) == expected


def test_a_write_left_by_a_killed_copy_does_not_block_the_next(tmp_path):
    data_dir = tmp_path / "data"
    [(row, data)] = fill(data_dir, [200_000])
    target = tmp_path / "target"
    # What a copy killed mid-write (SIGKILL) leaves: the temporary file of the key.
    temp = target / row.object_key
    temp = temp.with_name(f".{temp.name}.part")
    temp.parent.mkdir(parents=True)
    temp.write_bytes(b"half of it")
    result = copy_cli(tmp_path, "--data-dir", str(data_dir), "--to", target.as_uri())
    assert result.returncode == 0, result.stderr
    assert files_under(target) == {row.object_key: data}


def test_damaged_copies_in_the_target_are_written_again(tmp_path, s3_url, s3_endpoint):
    data_dir = tmp_path / "data"
    made = fill(data_dir, [50_000, 50_000, 70_000, 10])
    first = copy_cli(tmp_path, "--data-dir", str(data_dir), "--to", s3_url)
    assert first.returncode == 0, first.stderr
    bucket, prefix = bucket_and_prefix(s3_url)
    client = s3kit.client(s3_endpoint)
    (same_size, same_data), (shorter, _), (longer, _), _ = made
    flipped = bytes([same_data[0] ^ 1]) + same_data[1:]
    client.put_object(Bucket=bucket, Key=f"{prefix}/{same_size.object_key}", Body=flipped)
    client.put_object(Bucket=bucket, Key=f"{prefix}/{shorter.object_key}", Body=b"short")
    client.put_object(Bucket=bucket, Key=f"{prefix}/{longer.object_key}", Body=b"x" * 80_000)

    again = copy_cli(tmp_path, "--data-dir", str(data_dir), "--to", s3_url)
    assert again.returncode == 0, again.stderr
    replaced = sorted(lines_starting(again.stdout, "copied"))
    assert replaced == sorted(
        f"copied (over one that did not match its row) {row.object_key}"
        for row in (same_size, shorter, longer)
    )
    assert report_count(again.stdout, "already there") == 1
    assert f"3 ({human_bytes(170_000)}; 3 over one that did not match)" in again.stdout
    assert s3_objects(s3_endpoint, s3_url) == {row.object_key: data for row, data in made}


# --- what cannot be copied ---------------------------------------------------------------


def test_a_missing_or_damaged_source_object_is_reported_and_exits_1(tmp_path):
    data_dir = tmp_path / "data"
    made = fill(data_dir, [1000, 2000, 3000, 4000])
    (missing, _), (damaged, damaged_data), (bigger, _), _ = made
    (data_dir / "assets" / missing.object_key).unlink()
    (data_dir / "assets" / damaged.object_key).write_bytes(damaged_data[::-1])
    (data_dir / "assets" / bigger.object_key).write_bytes(os.urandom(3001))
    target = tmp_path / "target"
    result = copy_cli(tmp_path, "--data-dir", str(data_dir), "--to", target.as_uri())
    assert result.returncode == 1
    assert lines_starting(result.stdout, "missing") == [f"missing at source {missing.object_key}"]
    failed = sorted(lines_starting(result.stdout, "failed"))
    assert len(failed) == 2
    assert all("the source object does not match its row" in line for line in failed)
    assert any(damaged.object_key in line and "2000 bytes, sha256" in line for line in failed)
    assert any(bigger.object_key in line and "more bytes" in line for line in failed)
    assert report_count(result.stdout, "copied") == 1
    assert result.stderr.strip().splitlines() == [
        f"callboard: 3 assets not in {target.as_uri()} (listed above), the others are; once "
        "the source has them, running the command again keeps what is there and copies the rest"
    ]
    # Nothing that differs from its row was committed, nor left half-written.
    assert files_under(target) == {made[3][0].object_key: made[3][1]}


def test_a_target_that_cannot_be_written_at_all_is_one_line_and_exit_2(tmp_path):
    data_dir = tmp_path / "data"
    fill(data_dir, [100])
    (tmp_path / "a-file").write_text("not a directory")
    target = (tmp_path / "a-file" / "assets").as_uri()
    result = copy_cli(tmp_path, "--data-dir", str(data_dir), "--to", target)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "a-file is not a directory" in result.stderr
    assert lines_starting(result.stdout, "failed") == [] and "copied" not in result.stdout


def test_storage_that_fails_every_write_stops_the_run(tmp_path):
    data_dir = tmp_path / "data"
    made = fill(data_dir, [100] * 25)
    # The target itself passes its check; the company's directory in it cannot be made.
    target_root = tmp_path / "target"
    target_root.mkdir()
    (target_root / made[0][0].company_id).write_text("not a directory")
    result = copy_cli(tmp_path, "--data-dir", str(data_dir), "--to", target_root.as_uri())
    assert result.returncode == 1
    failed = lines_starting(result.stdout, "failed")
    assert len(failed) == 10
    reason = f": Not a directory: {target_root / made[0][0].company_id}/"
    assert all(reason in line for line in failed), failed
    assert report_count(result.stdout, "failed") == 10
    assert result.stderr.startswith(
        "callboard: stopped after 10 assets in a row failed; the last: "
    )
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("http://example.com/x", "--to: expected file:///absolute/path or s3://bucket/prefix"),
        ("file://relative/path", "--to: expected file:///absolute/path (three slashes)"),
        ("s3://user:secret@bucket/x", "--to: an s3:// storage URL carries no credentials"),
        ("s3://bucket/a/../b", "--to: the prefix 'a/../b' has an empty, '.' or '..' segment"),
        ("SAME", "--to: the assets are in file://"),
    ],
)
def test_a_bad_target_is_refused_with_exit_2(tmp_path, to, message):
    data_dir = tmp_path / "data"
    fill(data_dir, [10])
    if to == "SAME":
        to = (data_dir / "x" / ".." / "assets").as_uri()
    result = copy_cli(tmp_path, "--data-dir", str(data_dir), "--to", to)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"callboard: {message}"), result.stderr
    assert "secret" not in result.stderr
    assert not (tmp_path / "relative").exists()


def test_an_unreachable_bucket_is_one_line_and_exit_2(tmp_path, s3_url):
    data_dir = tmp_path / "data"
    fill(data_dir, [10])
    missing_bucket = s3_url.replace("s3://", "s3://no-such-").replace("/assets", "/x")
    result = copy_cli(tmp_path, "--data-dir", str(data_dir), "--to", missing_bucket)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"callboard: object storage {missing_bucket}: ")


def test_no_database_is_refused_rather_than_made(tmp_path):
    result = copy_cli(tmp_path, "--data-dir", str(tmp_path / "typo"), "--to", s3_like(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"callboard: no database at {tmp_path / 'typo' / 'callboard.db'}: --data-dir or "
        "--database names the node's"
    )
    assert not (tmp_path / "typo").exists()


def test_a_dry_run_counts_and_writes_nothing(tmp_path):
    data_dir = tmp_path / "data"
    made = fill(data_dir, [1000, 2000, 3000])
    target = tmp_path / "target"
    done = copy_cli(tmp_path, "--data-dir", str(data_dir), "--to", target.as_uri())
    assert done.returncode == 0, done.stderr
    (target / made[0][0].object_key).unlink()
    (data_dir / "assets" / made[1][0].object_key).unlink()
    (target / made[1][0].object_key).unlink()
    before = files_under(target)
    dry = copy_cli(tmp_path, "--data-dir", str(data_dir), "--to", target.as_uri(), "--dry-run")
    assert dry.returncode == 1
    assert lines_starting(dry.stdout, "would") == [f"would copy {made[0][0].object_key}"]
    assert lines_starting(dry.stdout, "missing") == [f"missing at source {made[1][0].object_key}"]
    assert "would copy:        1 (1000 bytes)" in dry.stdout
    assert "in the target:     1 (not read back by a dry run)" in dry.stdout
    assert files_under(target) == before


# --- interrupted mid-write (in process, over the real backends) ---------------------------


class Watched:
    """A real backend whose writes say when `threshold` bytes went through, so a test
    can interrupt a copy in the middle of an object."""

    def __init__(self, backend: Any, threshold: int) -> None:
        self.backend = backend
        self.threshold = threshold
        self.midway = trio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def start_write(self, key: str, update: Any) -> Any:
        sink = await self.backend.start_write(key, update)
        watched = self

        class Sink:
            written = 0

            def __getattr__(self, name: str) -> Any:
                return getattr(sink, name)

            async def write(self, data: Any) -> None:
                await sink.write(data)
                self.written += len(data)
                if self.written >= watched.threshold:
                    watched.midway.set()

        return Sink()


async def cancel_midway(copy: AssetCopy, watched: Watched) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(copy.run)
            await watched.midway.wait()
            nursery.cancel_scope.cancel()


async def source_of(tmp_path: Path, sizes: list[int]) -> tuple[SqliteStore, local.AssetStorage]:
    data_dir = tmp_path / "data"
    await trio.to_thread.run_sync(fill, data_dir, sizes)
    return SqliteStore(data_dir / "callboard.db"), local.AssetStorage(data_dir / "assets", CAPS)


@pytest.mark.trio
async def test_a_copy_cancelled_mid_upload_leaves_nothing_in_the_bucket(
    tmp_path, s3_url, s3_endpoint
):
    store, source = await source_of(tmp_path, [20 * MiB])
    target = S3Backend(parse_s3_url(s3_url))
    watched = Watched(target, 9 * MiB)  # past the first part: a multipart upload is open
    async with store.opened():
        copy = AssetCopy(store, source.backend, watched)
        await cancel_midway(copy, watched)
        assert copy.report.copied == 0
        assert await trio.to_thread.run_sync(s3_objects, s3_endpoint, s3_url) == {}
        assert await trio.to_thread.run_sync(multipart_uploads, s3_endpoint, s3_url) == []

        events = []
        report = await AssetCopy(store, source.backend, target, progress=events.append).run()
    assert [e.outcome for e in events] == [Outcome.COPIED]
    assert report.complete and report.copied == 1 and report.bytes_copied == 20 * MiB
    [key] = await trio.to_thread.run_sync(s3_objects, s3_endpoint, s3_url)
    assert key == events[0].asset.object_key


@pytest.mark.trio
async def test_a_copy_cancelled_mid_write_leaves_no_file(tmp_path):
    store, source = await source_of(tmp_path, [5 * MiB])
    target = local.LocalDisk(tmp_path / "target")
    watched = Watched(target, 2 * MiB)
    async with store.opened():
        copy = AssetCopy(store, source.backend, watched)
        await cancel_midway(copy, watched)
        assert copy.report.checked == 0
        assert files_under(target.root) == {}
        report = await AssetCopy(store, source.backend, target).run()
    assert report.complete and report.copied == 1
    assert files_under(target.root) == files_under(source.root)
