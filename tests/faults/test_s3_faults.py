"""Faults of S3 storage against a real node and moto's S3 server: an object store that
goes away in the middle of a write, and a render that goes over its cap after many
parts were uploaded. Either way the job says why, no asset row and no object appear,
and what an interrupted upload leaves is an unfinished upload that gc takes."""

from __future__ import annotations

import time

import httpx
import pytest
import trio
from faultkit import node_client

import s3kit
from callboard.storage.location import open_storage
from integration.serve_process import ServeProcess, serve
from netkit import CuttableProxy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

MIB = 1 << 20
SECRET = s3kit.CREDENTIALS["AWS_SECRET_ACCESS_KEY"]


def _bucket(s3_url: str) -> str:
    return s3_url.removeprefix("s3://").partition("/")[0]


def _submit(client: httpx.Client, company: str, **body) -> str:
    answer = client.post(f"/api/companies/{company}/content-jobs", json=body)
    assert answer.status_code == 202, answer.text
    return answer.json()["jobId"]


def _wait_terminal(client: httpx.Client, company: str, job_id: str, within: float = 120) -> dict:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        job = client.get(f"/api/companies/{company}/content-jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {within} s")


def _company(node: ServeProcess) -> str:
    with node_client(node) as client:
        return client.post("/api/companies", json={"name": "acme"}).json()["id"]


def _unfinished_are_gcs(s3_url: str) -> None:
    """What an interrupted write left in the bucket is an unfinished upload that gc's
    listing finds and its removal takes (the grace passed: a cutoff in the future)."""
    storage = open_storage(s3_url, {"generated": MIB, "uploads": MIB})

    async def sweep() -> None:
        found = []
        async for batch in storage.backend.scan(100):
            found += [item for item in batch if item.temporary]
        removed = await storage.backend.remove(found, time.time() + 3600)
        assert [deleted for _, deleted in removed] == [True] * len(found)

    trio.run(sweep)


def test_the_store_going_away_mid_write_fails_the_attempt_and_the_retry_finishes(
    tmp_path, s3_url, s3_endpoint, monkeypatch
):
    host, port = s3_endpoint.removeprefix("http://").split(":")
    proxy = CuttableProxy((host, int(port)))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{proxy.port}")
    s3 = s3kit.client(s3_endpoint)  # behind the proxy's back
    bucket = _bucket(s3_url)
    try:
        with serve(tmp_path, "--storage-url", s3_url, "--workers", "1") as node:
            company = _company(node)
            with node_client(node) as client:
                # 4 KiB chunks: the render is slow enough to be cut in the middle.
                job_id = _submit(
                    client,
                    company,
                    jobType="demo.render",
                    input={"bytes": 64 * MIB, "chunk": 4096},
                    maxAttempts=2,
                )
                deadline = time.monotonic() + 60
                while not s3.list_multipart_uploads(Bucket=bucket).get("Uploads"):
                    assert time.monotonic() < deadline, "the render never began uploading"
                    time.sleep(0.05)
                proxy.cut()
                # The attempt fails with the store's reason; then the store is back.
                deadline = time.monotonic() + 60
                while True:
                    seen = client.get(f"/api/companies/{company}/content-jobs/{job_id}").json()
                    if seen["errorMessage"]:
                        break
                    assert time.monotonic() < deadline, seen
                    time.sleep(0.2)
                proxy.restore()
                job = _wait_terminal(client, company, job_id)
                error = seen["errorMessage"]
                assert f"object storage {s3_url}" in error, error
                assert SECRET not in error
                assert job["status"] == "done" and job["attempt"] == 2, job
                assets = client.get(f"/api/companies/{company}/assets?jobId={job_id}").json()
                assert [a["byteSize"] for a in assets["items"]] == [64 * MIB]
                (only,) = assets["items"]
                content = client.get(f"/api/companies/{company}/assets/{only['id']}/content")
                assert len(content.content) == 64 * MIB
        assert SECRET not in "".join(node.log)
        # The bucket holds the one asset; the first attempt left at most an unfinished
        # upload (its abort could not reach the store), which gc takes.
        objects = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        assert [o["Size"] for o in objects] == [64 * MIB]
        _unfinished_are_gcs(s3_url)
        assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    finally:
        proxy.close()


def test_a_600_mib_render_over_the_500_mib_cap_leaves_nothing_in_the_bucket(
    tmp_path, s3_url, s3_endpoint
):
    s3 = s3kit.client(s3_endpoint)
    bucket = _bucket(s3_url)
    with serve(tmp_path, "--storage-url", s3_url, "--workers", "1") as node:
        company = _company(node)
        with node_client(node) as client:
            job_id = _submit(
                client,
                company,
                jobType="demo.render",
                input={"bytes": 600 * MIB},
                maxAttempts=1,
            )
            job = _wait_terminal(client, company, job_id, within=180)
            assert job["status"] == "failed"
            assert "limit for namespace 'generated'" in job["errorMessage"], job
            assets = client.get(f"/api/companies/{company}/assets?jobId={job_id}").json()
            assert assets["items"] == []
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
