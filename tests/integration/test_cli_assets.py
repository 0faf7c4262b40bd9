"""`callboard assets upload | download | list` and `callboard gc` through the installed
entry point. A download verifies size and sha256 and fails loudly, leaving no file,
when the bytes are not the ones recorded: a file corrupted on the server's disk, or a
(fake) server that serves tampered bytes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_kit import (
    ASSET_ID,
    CALLBOARD,
    Reply,
    asset_routes,
    callboard,
    callboard_all,
    fake_api,
)
from serve_process import ServeProcess, serve

from callboard.client import Client

pytestmark = pytest.mark.slow

CAP = 64 * 1024  # CALLBOARD_ATTACHMENT_MAX_BYTES for this module's server


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServeProcess]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CALLBOARD_ATTACHMENT_MAX_BYTES", str(CAP))
        with serve(tmp_path_factory.mktemp("cli-assets")) as s:
            assert callboard(s, "companies", "create", "acme").returncode == 0
            yield s


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- against a fake server: no asset routes needed ----------------------------------------

CONTENT = b"minutes of the meeting\n" * 200


def fake_download(tmp_path: Path, routes: dict, *args: str) -> subprocess.CompletedProcess[str]:
    with fake_api(routes) as api:
        return subprocess.run(
            [CALLBOARD, "assets", "download", ASSET_ID, *args, "--url", api.url, "--token", "t"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if not k.startswith("CALLBOARD_")},
        )


def test_download_of_tampered_bytes_fails_loudly_and_writes_nothing(tmp_path):
    tampered = CONTENT.replace(b"meeting", b"MEETING")
    result = fake_download(tmp_path, asset_routes(CONTENT, tampered), "-o", "minutes.txt")
    assert result.returncode == 1 and result.stdout == ""
    line = one_error_line(result)
    assert line.startswith(f"callboard: asset {ASSET_ID}: downloaded {len(tampered)} bytes")
    assert hashlib.sha256(tampered).hexdigest() in line and line.endswith("nothing was written")
    assert files_in(tmp_path) == []

    honest = fake_download(tmp_path, asset_routes(CONTENT, CONTENT))
    assert honest.returncode == 0, honest.stderr
    assert honest.stdout.strip() == "report.txt"  # the original name, in the working dir
    assert (tmp_path / "report.txt").read_bytes() == CONTENT
    assert files_in(tmp_path) == ["report.txt"]


def test_download_redirect_follows_only_when_asked_and_checks_the_stores_bytes(tmp_path):
    """A (fake) server answering `?redirect=true` with a 307 to a (fake) object store on
    another origin: the token never goes there, the store's own ETag is not taken for
    the sha256, tampered bytes and a refusal fail loudly, and the URL's signature (a
    credential) is never printed."""
    store_replies = [
        Reply(403, {"Content-Type": "application/xml"}, b"<Error>AccessDenied</Error>"),
        Reply(200, {"ETag": '"md5-of-the-store"'}, CONTENT.replace(b"meeting", b"MEETING")),
        Reply(200, {"ETag": '"md5-of-the-store"'}, CONTENT),
    ]
    with fake_api({"/bucket/report.txt": lambda seen: store_replies.pop(0)}) as store:
        location = f"{store.url}/bucket/report.txt?X-Amz-Signature=not-to-be-printed"
        routes = asset_routes(CONTENT, CONTENT)
        content_path = next(path for path in routes if path.endswith("/content"))
        served = routes[content_path]
        routes[content_path] = lambda seen: (
            Reply(307, {"Location": location, "Cache-Control": "no-store"})
            if seen.path.endswith("?redirect=true")
            else served(seen)
        )
        plain = fake_download(tmp_path, routes, "-o", "plain.txt")
        assert plain.returncode == 0, plain.stderr
        assert store.seen == []  # not asked: no redirect, no visit to the store
        refused = fake_download(tmp_path, routes, "-o", "copy.txt", "--redirect")
        assert refused.returncode == 1
        assert one_error_line(refused) == (
            f"callboard: asset {ASSET_ID}: the object store at {store.url} answered HTTP 403 "
            "to the download URL; nothing was written"
        )
        tampered = fake_download(tmp_path, routes, "-o", "copy.txt", "--redirect")
        assert tampered.returncode == 1
        assert one_error_line(tampered).endswith("nothing was written")
        assert files_in(tmp_path) == ["plain.txt"]
        honest = fake_download(tmp_path, routes, "-o", "copy.txt", "--redirect")
        assert honest.returncode == 0, honest.stderr
        assert (tmp_path / "copy.txt").read_bytes() == CONTENT
    assert len(store.seen) == 3
    assert not any("authorization" in {h.lower() for h in seen.headers} for seen in store.seen)
    for result in (refused, tampered, honest):
        assert "not-to-be-printed" not in result.stdout + result.stderr


# --- against the real server (needs the asset routes and POST /api/gc) --------------------


def test_upload_then_download_verified_and_listed(server: ServeProcess, tmp_path):
    work = server.data_dir.parent
    (work / "brief.txt").write_bytes(b"draw me a sheep\n" * 1000)
    uploaded = callboard(server, "assets", "upload", "brief.txt")
    assert uploaded.returncode == 0, uploaded.stderr
    asset_id = uploaded.stdout.strip()
    assert "uploaded brief.txt: 16000 bytes" in uploaded.stderr

    out = tmp_path / "out"
    out.mkdir()
    to_file, to_dir, listed = callboard_all(
        server,
        ["assets", "download", asset_id, "-o", str(tmp_path / "copy.txt")],
        ["assets", "download", asset_id, "-o", str(out), "--company", "acme"],
        ["assets", "list", "--json"],
    )
    assert to_file.returncode == 0, to_file.stderr
    assert (tmp_path / "copy.txt").read_bytes() == (work / "brief.txt").read_bytes()
    assert "sha256" in to_file.stderr and "verified" in to_file.stderr
    assert to_dir.returncode == 0, to_dir.stderr
    assert files_in(out) == ["brief.txt"]
    assets = json.loads(listed.stdout)
    assert [a["id"] for a in assets] == [asset_id]
    assert assets[0]["sha256"] == hashlib.sha256((work / "brief.txt").read_bytes()).hexdigest()


def test_download_of_a_file_corrupted_on_disk_fails_loudly(server: ServeProcess, tmp_path):
    work = server.data_dir.parent
    (work / "ledger.csv").write_bytes(b"1,2,3\n" * 500)
    asset_id = callboard(server, "assets", "upload", "ledger.csv").stdout.strip()
    with Client(server.url, server.token) as client:
        stored = server.data_dir / "assets" / client.asset(asset_id).object_key  # type: ignore[operator]
    data = bytearray(stored.read_bytes())
    data[0] ^= 0xFF  # same size, different bytes
    stored.write_bytes(bytes(data))

    result = callboard(server, "assets", "download", asset_id, "-o", str(tmp_path / "x.csv"))
    assert result.returncode == 1 and result.stdout == ""
    line = one_error_line(result)
    assert f"asset {asset_id}: downloaded 3000 bytes with sha256 " in line
    assert line.endswith("nothing was written")
    assert files_in(tmp_path) == []


def test_upload_over_the_cap_is_refused(server: ServeProcess):
    work = server.data_dir.parent
    (work / "big.bin").write_bytes(b"x" * (CAP + 1))
    result = callboard(server, "assets", "upload", "big.bin")
    assert result.returncode == 1
    assert f"({CAP} bytes) limit for namespace 'uploads'" in one_error_line(result)
    missing = callboard(server, "assets", "upload", "no-such-file.bin")
    assert missing.returncode == 2 and "no-such-file.bin" in one_error_line(missing)


def test_gc_reports_what_it_did_and_needs_the_operator(server: ServeProcess):
    with Client(server.url, server.token) as client:
        secret = client.create_token("acme", "gc-test")["token"]
    report, as_json, refused = callboard_all(
        server, ["gc"], ["gc", "--json"], ["gc", "--token", secret]
    )
    assert report.returncode == 0, report.stderr
    assert report.stdout.strip()
    assert as_json.returncode == 0 and isinstance(json.loads(as_json.stdout), dict)
    assert refused.returncode == 2 and one_error_line(refused).startswith("callboard: ")


def test_show_lists_the_assets_a_job_made_and_they_download(server: ServeProcess, tmp_path):
    made = callboard(
        server,
        "submit",
        "demo.render",
        "--input",
        '{"bytes": 50000, "chunk": 8192}',
        "--source-task",
        "task-render",
        "--follow",
    )
    assert made.returncode == 0, made.stderr
    job_id = made.stdout.strip()
    result_id = made.stderr.strip().splitlines()[-1].rsplit("result asset ", 1)[1]
    shown = json.loads(callboard(server, "show", job_id, "--json").stdout)
    assert shown["job"]["resultAssetId"] == result_id
    assert [(a["id"], a["byteSize"], a["createdByJobId"]) for a in shown["assets"]] == [
        (result_id, 50000, job_id)
    ]
    fetched = callboard(server, "assets", "download", result_id, "-o", str(tmp_path))
    assert fetched.returncode == 0, fetched.stderr
    written = Path(fetched.stdout.strip())
    assert hashlib.sha256(written.read_bytes()).hexdigest() == shown["assets"][0]["sha256"]


def test_a_download_never_replaces_a_file_by_the_uploaders_name(server: ServeProcess, tmp_path):
    """The name comes from whoever uploaded: it loses any leading dot (no .bashrc),
    and a download to that name refuses to overwrite; only an explicit -o FILE does."""
    work = server.data_dir.parent
    (work / ".bashrc").write_text("echo pwned\n")
    uploaded = callboard(server, "assets", "upload", ".bashrc")
    assert uploaded.returncode == 0, uploaded.stderr
    asset_id = uploaded.stdout.strip()
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("original rc\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBOARD_")}

    def download(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                CALLBOARD,
                "assets",
                "download",
                asset_id,
                *args,
                "--url",
                server.url,
                "--token",
                server.token,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=home,
            env=env,
        )

    first = download()
    assert first.returncode == 0, first.stderr
    assert (home / "bashrc").read_text() == "echo pwned\n"
    assert (home / ".bashrc").read_text() == "original rc\n"
    again = download()
    assert again.returncode == 1
    assert "already exists" in one_error_line(again)
    forced = download("-o", str(home / "bashrc"))
    assert forced.returncode == 0, forced.stderr
    missing_dir = download("-o", str(home / "nowhere") + "/")
    assert missing_dir.returncode == 2
    assert "no such directory" in one_error_line(missing_dir)
