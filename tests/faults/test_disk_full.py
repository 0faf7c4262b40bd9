"""Asset storage out of space: a 2 MiB tmpfs holds the assets of a real node. A handler
streaming a bigger asset fails its job with a clear message; an upload answers 507;
neither leaves a partial file or an asset row, and the node carries on once there is
room again. Mounting needs root: without it the test says why it did not run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import trio

from web.webkit import Server, create_company, serving

pytestmark = [pytest.mark.trio, pytest.mark.slow]


def _mount_small_tmpfs(where: Path) -> bool:
    where.mkdir(parents=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def _upload(server: Server, company: str, size: int):
    async with server.client() as client:
        return await client.post(
            f"/api/companies/{company}/assets",
            files={"file": ("big.bin", b"x" * size, "application/octet-stream")},
        )


async def test_a_full_disk_fails_the_job_and_the_upload_and_keeps_nothing(tmp_path):
    assets = tmp_path / "assets"
    if not _mount_small_tmpfs(assets):
        pytest.skip("needs root to mount a 2 MiB tmpfs (mount -t tmpfs) for a full disk")
    try:
        env = {"CALLBOARD_STORAGE_DIR": str(assets)}
        async with serving(tmp_path, env=env) as server:
            company = (await create_company(server, "full"))["id"]
            job = await server.rt.submit(
                company, "demo.render", {"bytes": 4 << 20, "chunk": 64 << 10}
            )
            job = await server.rt.wait(job.id, timeout=30)
            assert job.status == "failed"
            assert job.error_message == (
                "asset storage is out of space: the 'generated' asset was not kept"
            )
            upload = await _upload(server, company, 3 << 20)
            assert upload.status_code == 507
            assert upload.json()["error"]["code"] == "insufficient_storage"
            assert _files(assets) == []  # no partial file
            assert (await server.rt.list_assets(company)).items == []  # no row
            # Room again (nothing was kept): the node carries on.
            assert (await _upload(server, company, 100_000)).status_code == 201
            print("\nstorage full: job failed with a clear message, upload 507, 0 files left")
    finally:
        with trio.CancelScope(shield=True):
            await trio.run_process(["umount", str(assets)], check=False)
