"""Two `callboard serve` processes on one PostgreSQL database and one S3 bucket (moto's
server), each with a data directory of its own, as an operator runs a cluster: every
asset is served by every node, whichever node stored it, and a node that cannot reach
the object store answers 503 at once and never shows the store's secret."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import httpx
import pytest
import trio
from serve_process import ServeProcess, serve

import s3kit
from callboard.client import AsyncClient, Client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MiB = 1024 * 1024
SECRET = s3kit.CREDENTIALS["AWS_SECRET_ACCESS_KEY"]


def auth(node: ServeProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.token}"}


def content_url(node: ServeProcess, company_id: str, asset_id: str) -> str:
    return f"{node.url}/api/companies/{company_id}/assets/{asset_id}/content"


def node_dirs(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    return a, b


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def completed(node: ServeProcess) -> int:
    """Jobs the node's own workers finished."""
    stats = httpx.get(f"{node.url}/api/stats", headers=auth(node), timeout=10).json()
    return sum(worker["completed"] for worker in stats["workers"])


async def download_redirected(node: ServeProcess, asset_id: str, target: Path) -> str:
    async with AsyncClient(node.url, node.token, timeout=30) as client:
        done = await client.download(asset_id, target, redirect=True)
    return hashlib.sha256(done.path.read_bytes()).hexdigest()


def test_every_node_serves_every_asset_of_the_shared_bucket(pg_url, s3_url, tmp_path):
    a_dir, b_dir = node_dirs(tmp_path)
    shared = ("--database", pg_url, "--storage-url", s3_url)
    # A runs no jobs, so B runs every one.
    with (
        serve(a_dir, *shared, "--workers", "0") as a,
        serve(b_dir, *shared, "--workers", "2") as b,
        Client(a.url, a.token, timeout=30) as via_a,
        Client(b.url, b.token, timeout=30) as via_b,
    ):
        company = via_a.create_company("acme")["id"]
        # Past one 8 MiB part: a multipart upload, completed by A.
        data = os.urandom(9 * MiB + 5)
        source = tmp_path / "brief.bin"
        source.write_bytes(data)
        asset = via_a.upload(source, company)
        assert s3kit.stored(s3_url) == [asset.object_key]

        # Through B: the client, the CLI, a Range, and a redirect to the store.
        done = via_b.download(asset.id, tmp_path / "via-b.bin")
        assert done.path.read_bytes() == data
        cli = b.cli("assets", "download", asset.id, "-o", str(tmp_path / "via-b-cli.bin"))
        assert cli.returncode == 0, cli.stderr
        assert (tmp_path / "via-b-cli.bin").read_bytes() == data
        url = content_url(b, company, asset.id)
        part = httpx.get(url, headers={**auth(b), "Range": "bytes=8388600-8388615"}, timeout=30)
        assert part.status_code == 206 and part.content == data[8388600:8388616]
        assert part.headers["content-range"] == f"bytes 8388600-8388615/{len(data)}"
        assert part.headers["etag"] == f'"{asset.sha256}"'
        redirected = httpx.get(url, params={"redirect": "true"}, headers=auth(b), timeout=30)
        assert redirected.status_code == 307, redirected.text
        location = redirected.headers["location"]
        assert location.startswith(os.environ["AWS_ENDPOINT_URL_S3"] + "/")
        assert httpx.get(location, timeout=30).content == data  # no token: the URL is one
        cli = b.cli(
            "assets", "download", asset.id, "-o", str(tmp_path / "direct.bin"), "--redirect"
        )
        assert cli.returncode == 0, cli.stderr
        assert (tmp_path / "direct.bin").read_bytes() == data

        # A job that ran on B: its result is read through A.
        submitted = via_a.submit(company, "demo.render", {"bytes": 20 * MiB, "chunk": MiB})
        job = via_a.wait(submitted.job_id, timeout=120)
        assert job.status.value == "done", job.error_message
        assert [completed(node) for node in (a, b)] == [0, 1]
        result = via_a.asset(job.result_asset_id)
        assert result.byte_size == 20 * MiB and result.created_by_job_id == job.id
        rendered = via_a.download(result.id, tmp_path / "render.bin")
        assert hashlib.sha256(rendered.path.read_bytes()).hexdigest() == result.sha256
        # And the async client's redirect, through A, straight from the store.
        digest = trio.run(download_redirected, a, result.id, tmp_path / "render-direct.bin")
        assert digest == result.sha256
        assert sorted(s3kit.stored(s3_url)) == sorted([asset.object_key, result.object_key])
    for node in (a, b):
        log = "\n".join(node.log)
        assert "Traceback" not in log and SECRET not in log


def test_a_node_that_cannot_reach_the_store_answers_503_at_once(
    pg_url, s3_url, tmp_path, monkeypatch
):
    a_dir, b_dir = node_dirs(tmp_path)
    shared = ("--database", pg_url, "--storage-url", s3_url)
    with serve(a_dir, *shared, "--workers", "0") as a:
        with Client(a.url, a.token, timeout=30) as via_a:
            company = via_a.create_company("acme")["id"]
            source = tmp_path / "kept.txt"
            source.write_bytes(b"stored while the store was reachable")
            kept = via_a.upload(source, company)
        # B: the same bucket, but its endpoint is a port where nothing listens.
        endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{closed_port()}")
        with serve(b_dir, *shared, "--workers", "1") as b:
            answers = []
            # A client timeout far above what the node may take: the node answers first.
            with httpx.Client(base_url=b.url, headers=auth(b), timeout=120) as http:
                started = time.monotonic()
                upload = http.post(
                    f"/api/companies/{company}/assets", files={"file": ("x.bin", b"x" * 1000)}
                )
                took = time.monotonic() - started
                answers.append(upload)
                assert upload.status_code == 503, upload.text
                assert upload.json()["error"]["code"] == "storage_unavailable"
                assert took < 15, f"the refusal took {took:.1f} s"
                # Big enough for a multipart upload: refused as well.
                big = http.post(
                    f"/api/companies/{company}/assets",
                    files={"file": ("big.bin", b"x" * (9 * MiB))},
                )
                answers.append(big)
                assert big.json()["error"]["code"] == "storage_unavailable"
                for params in ({}, {"redirect": "true"}):
                    download = http.get(
                        f"/api/companies/{company}/assets/{kept.id}/content", params=params
                    )
                    answers.append(download)
                    assert download.status_code == 503, download.text
                    assert "location" not in download.headers
                # A job whose asset cannot be stored fails, saying why.
                job_id = http.post(
                    f"/api/companies/{company}/content-jobs",
                    json={"jobType": "demo.render", "input": {"bytes": 1000}},
                ).json()["jobId"]
                with Client(b.url, b.token, timeout=60) as via_b:
                    failed = via_b.wait(job_id, timeout=60)
                assert failed.status.value == "failed"
                assert (failed.error_message or "").startswith(
                    f"object storage {s3_url}: Could not connect to the endpoint URL"
                )
                assert SECRET not in failed.error_message
        log = "\n".join(b.log)
        assert f"asset storage failed: object storage {s3_url}: Could not connect" in log
        for answer in answers:
            assert SECRET not in answer.text and SECRET not in str(answer.headers)
        assert SECRET not in log
        assert s3kit.stored(s3_url, endpoint) == [kept.object_key]  # B left nothing behind
