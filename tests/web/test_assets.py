"""Assets over HTTP against a real node: uploads (streamed, capped, strict), metadata,
lists by source task, downloads (ranges, conditionals, names, redirects to the object
store), isolation between companies, gc; and the large-file paths with their memory
measured.

Every test that starts a node runs twice: on the local disk and on S3 (moto's server),
which must answer alike; what is stored is looked at behind the node's back
(`s3kit.contents`). Tests of the disk's own files are `local_only`."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio
import trio.testing
from webkit import (
    Server,
    create_company,
    create_token,
    raw_exchange,
    wait_for,
    wait_for_status,
)
from werkzeug.exceptions import RequestEntityTooLarge

import s3kit
from callboard.storage.names import OBJECT_NAME, ORPHAN_GRACE_SECONDS
from callboard.web.body import BUFFERED_CHUNKS, FlowControlledBody

pytestmark = pytest.mark.trio

MiB = 1024 * 1024
UPLOAD_CAP_MESSAGE = "asset exceeds the 10 MiB (10485760 bytes) limit for namespace 'uploads'"


def assets_url(company_id: str, *rest: str) -> str:
    return "/".join([f"/api/companies/{company_id}/assets", *rest])


@pytest.fixture(params=["file", "s3"])
def storage_url(request) -> str:
    """The node's storage (tests/web/conftest.py): its data directory, or a bucket."""
    return "" if request.param == "file" else request.getfixturevalue("s3_url")


#: A test of the files on the local disk: it runs on that storage only.
local_only = pytest.mark.parametrize("storage_url", ["file"], indirect=True)


def on_disk(server: Server) -> bool:
    return server.settings.storage_location.startswith("file://")


def stored(server: Server) -> list[str]:
    """The object keys in the node's storage, and any leftover of a write (a temporary
    file, an unfinished multipart upload)."""
    return s3kit.contents(server.settings.storage_location)


async def upload(
    client: httpx.AsyncClient,
    company_id: str,
    content: bytes,
    filename: str = "notes.txt",
    content_type: str = "text/plain",
    **params: str,
) -> httpx.Response:
    return await client.post(
        assets_url(company_id),
        files={"file": (filename, content, content_type)},
        params=params,
    )


def multipart(*parts: tuple[bytes, bytes], boundary: bytes = b"b0undary") -> tuple[bytes, str]:
    """A form built by hand (httpx escapes what these tests must send raw): each part
    is (its Content-Disposition parameters, its bytes)."""
    body = b""
    for disposition, data in parts:
        body += b"--" + boundary + b"\r\n"
        body += b"Content-Disposition: form-data; " + disposition + b"\r\n"
        body += b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    body += b"--" + boundary + b"--\r\n"
    return body, f"multipart/form-data; boundary={boundary.decode()}"


async def post_form(
    client: httpx.AsyncClient, company_id: str, body: bytes, content_type: str
) -> httpx.Response:
    return await client.post(
        assets_url(company_id), content=body, headers={"Content-Type": content_type}
    )


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


# --- uploads and downloads -------------------------------------------------------------


async def test_upload_then_metadata_then_content(server, company):
    data = "bonjour, été\n".encode() * 100
    name = "résumé (1).txt"
    async with server.client() as client:
        response = await upload(client, company["id"], data, name, sourceTaskId="task-7")
        assert response.status_code == 201, response.text
        asset = response.json()
        assert set(asset) == {
            "id",
            "companyId",
            "namespace",
            "objectKey",
            "contentType",
            "byteSize",
            "sha256",
            "originalFilename",
            "sourceTaskId",
            "createdByJobId",
            "createdAt",
        }
        assert asset["companyId"] == company["id"] and asset["namespace"] == "uploads"
        assert asset["byteSize"] == len(data)
        assert asset["sha256"] == hashlib.sha256(data).hexdigest()
        assert asset["originalFilename"] == name and asset["contentType"] == "text/plain"
        assert asset["sourceTaskId"] == "task-7" and asset["createdByJobId"] is None
        assert (await client.get(assets_url(company["id"], asset["id"]))).json() == asset

        content = await client.get(assets_url(company["id"], asset["id"], "content"))
        assert content.status_code == 200 and content.content == data
        headers = content.headers
        assert headers["content-type"].startswith("text/plain")
        assert headers["content-length"] == str(len(data))
        assert headers["etag"] == f'"{asset["sha256"]}"'
        assert headers["accept-ranges"] == "bytes"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["content-disposition"] == (
            "attachment; filename=\"resume_1.txt\"; filename*=UTF-8''" + quote(name, safe="")
        )

        head = await client.head(assets_url(company["id"], asset["id"], "content"))
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(data))

        again = await client.get(
            assets_url(company["id"], asset["id"], "content"),
            headers={"If-None-Match": headers["etag"]},
        )
        assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize(
    ("range_", "status", "expect"),
    [
        ("bytes=0-9", 206, (0, 10)),
        ("bytes=990-", 206, (990, 1000)),
        ("bytes=-5", 206, (995, 1000)),
        ("bytes=-5000", 206, (0, 1000)),
        ("bytes=900-5000", 206, (900, 1000)),
        ("bytes=0-1,5-6", 200, (0, 1000)),  # several ranges: the whole body
        ("bytes=abc", 200, (0, 1000)),  # malformed: ignored
        ("bytes=9-2", 200, (0, 1000)),
        ("items=0-1", 200, (0, 1000)),
        ("bytes=1000-", 416, None),
        ("bytes=-0", 416, None),
        ("bytes=" + "1" * 5000 + "-", 200, (0, 1000)),  # absurdly long: malformed, not a 500
        ("bytes=0-" + "9" * 5000, 200, (0, 1000)),
    ],
)
async def test_single_ranges(server, company, range_, status, expect):
    data = os.urandom(1000)
    async with server.client() as client:
        asset = (await upload(client, company["id"], data, "r.bin")).json()
        url = assets_url(company["id"], asset["id"], "content")
        response = await client.get(url, headers={"Range": range_})
        assert response.status_code == status
        if status == 416:
            assert response.headers["content-range"] == "bytes */1000"
            assert error_of(response, 416)["code"] == "range_not_satisfiable"
            return
        start, end = expect
        assert response.content == data[start:end]
        assert response.headers["content-length"] == str(end - start)
        if status == 206:
            assert response.headers["content-range"] == f"bytes {start}-{end - 1}/1000"
        # If-Range: a stale tag gets the whole body, the current one the range.
        stale = await client.get(url, headers={"Range": range_, "If-Range": '"stale"'})
        assert stale.status_code == 200 and stale.content == data
        fresh = await client.get(
            url, headers={"Range": range_, "If-Range": response.headers["etag"]}
        )
        assert fresh.status_code == status and fresh.content == data[start:end]


async def test_a_client_leaving_mid_download_leaves_the_server_well(server, company):
    data = os.urandom(5 * MiB)
    async with server.client() as client:
        asset = (await upload(client, company["id"], data, "big.bin")).json()
        url = assets_url(company["id"], asset["id"], "content")
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        request = (
            f"GET {url} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {server.token}\r\n\r\n"
        ).encode()
        for _ in range(3):
            # A bare socket: read the start of the answer, then hang up on the rest.
            async with await trio.open_tcp_stream(host, int(port)) as sock:
                await sock.send_all(request)
                assert (await sock.receive_some(65536)).startswith(b"HTTP/1.1 200")
        whole = await client.get(url)
        assert whole.status_code == 200 and whole.content == data
    if HAVE_PROC and on_disk(server):  # every server-side read of the file was closed
        path = str(server.rt.storage.path_of(asset["objectKey"]))
        await wait_for(lambda: path not in open_files())


HAVE_PROC = Path("/proc/self/fd").is_dir()


def open_files() -> set[str]:
    found = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            found.add(os.readlink(fd))
        except OSError:
            continue  # closed meanwhile
    return found


async def test_upload_over_the_cap_is_413_and_stores_nothing(server, company):
    async with server.client() as client:
        exactly = await upload(client, company["id"], b"x" * (10 * MiB), "exactly.bin")
        assert exactly.status_code == 201, exactly.text
        over = await upload(client, company["id"], b"x" * (10 * MiB + 1), "over.bin")
        error = error_of(over, 413)
        assert error == {"code": "too_large", "message": UPLOAD_CAP_MESSAGE}
        listed = (await client.get(assets_url(company["id"]))).json()["items"]
    assert [a["originalFilename"] for a in listed] == ["exactly.bin"]
    # Nothing of the refused one: no file, no temporary, no unfinished multipart upload
    # (10 MiB + 1 is past the first 8 MiB part on S3).
    assert stored(server) == [exactly.json()["objectKey"]]
    # Announced too large by Content-Length: refused before a byte of the body is read.
    status, content = await raw_exchange(
        server,
        "POST",
        assets_url(company["id"]),
        {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(50 * MiB)},
        [],
    )
    assert status == 413 and json.loads(content)["error"]["message"] == UPLOAD_CAP_MESSAGE
    assert stored(server) == [exactly.json()["objectKey"]]


async def test_a_client_sending_far_over_the_cap_reads_its_413(server, company):
    """The client is still writing a body announced far over the cap: the refusal
    closes the connection (after a bounded drain), so the 413 reaches it every time.
    (A sync client in a thread: httpx's async multipart stream, abandoned when the
    server answers early, would trip the strict unraisable-warning check.)"""
    body = b"x" * (30 * MiB)
    headers = {"Authorization": f"Bearer {server.token}"}

    def send_all() -> list[httpx.Response]:
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            return [
                client.post(assets_url(company["id"]), files={"file": ("big.bin", body)})
                for _ in range(5)
            ]

    for over in await trio.to_thread.run_sync(send_all):
        assert error_of(over, 413)["message"] == UPLOAD_CAP_MESSAGE
        assert over.headers["connection"] == "close"
    assert stored(server) == []


async def test_bad_uploads_are_400_and_store_nothing(server, company):
    file_part = (b'name="file"; filename="a.txt"', b"data")
    cases = {
        "not multipart": (b'{"file": "x"}', "application/json"),
        "another field": multipart((b'name="other"', b"v")),
        "a field after the file": multipart(file_part, (b'name="other"', b"v")),
        "two files": multipart(file_part, (b'name="file"; filename="b.txt"', b"more")),
        "no filename": multipart((b'name="file"; filename=""', b"data")),
        "no parts": (b"--b0undary--\r\n", "multipart/form-data; boundary=b0undary"),
        "cut short": (multipart(file_part)[0][:-20], "multipart/form-data; boundary=b0undary"),
        "another boundary": (b"x" * (2 * MiB), "multipart/form-data; boundary=b0undary"),
    }
    async with server.client() as client:
        for what, (body, content_type) in cases.items():
            response = await post_form(client, company["id"], body, content_type)
            assert response.status_code == 400, f"{what}: {response.text}"
            assert response.json()["error"]["code"] == "invalid_request", what
        response = await client.post(
            assets_url(company["id"]),
            params={"folder": "x"},
            files={"file": ("a.txt", b"x", "text/plain")},
        )
        assert "unknown query parameter" in error_of(response, 400)["message"]
        response = await upload(client, company["id"], b"x", content_type="not a type")
        assert "media type" in error_of(response, 400)["message"]
        assert (await client.get(assets_url(company["id"]))).json()["items"] == []
    assert stored(server) == []


async def test_hostile_filenames_are_stored_safely(server, company):
    names = ["../../etc/passwd", "a/b", "nul\x00byte.txt", "z" * 10_000 + ".txt"]
    async with server.client() as client:
        for name in names:
            body, content_type = multipart(
                (b'name="file"; filename="' + name.encode() + b'"', b"payload")
            )
            response = await post_form(client, company["id"], body, content_type)
            assert response.status_code == 201, response.text[:300]
            asset = response.json()
            key = asset["objectKey"]
            owner, namespace, *_, object_name = key.split("/")
            assert (owner, namespace) == (company["id"], "uploads") and key in stored(server)
            assert OBJECT_NAME.fullmatch(object_name) and ".." not in key
            if on_disk(server):
                root = server.rt.storage.root.resolve()
                path = server.rt.storage.path_of(key).resolve()
                assert path.is_relative_to(root / company["id"] / "uploads") and path.is_file()
            assert "\x00" not in asset["originalFilename"]
            assert len(asset["originalFilename"]) <= 255
            download = await client.get(assets_url(company["id"], asset["id"], "content"))
            assert download.content == b"payload"
            disposition = download.headers["content-disposition"]
            assert "\r" not in disposition and "\n" not in disposition
            assert len(disposition) < 2000
    safe_names = {key.rsplit("/", 1)[-1].split("-", 5)[-1] for key in stored(server)}
    assert {"etc_passwd", "a_b", "nul_byte.txt"} <= safe_names


async def test_the_source_task_link_is_queryable(server, company):
    async with server.client() as client:
        response = await client.post(
            f"/api/companies/{company['id']}/content-jobs",
            json={
                "jobType": "demo.render",
                "input": {"bytes": 5000, "chunk": 1000, "contentType": "image/svg+xml"},
                "sourceTaskId": "task-7",
            },
        )
        job_id = response.json()["jobId"]
        await wait_for_status(server, job_id, "done")
        job = (await client.get(f"/api/companies/{company['id']}/content-jobs/{job_id}")).json()
        await upload(client, company["id"], b"brief", "brief.txt", sourceTaskId="task-7")
        await upload(client, company["id"], b"other", "other.txt", sourceTaskId="task-8")

        async def listed(**params: Any) -> dict[str, Any]:
            response = await client.get(assets_url(company["id"]), params=params)
            assert response.status_code == 200, response.text
            return response.json()

        items = (await listed(sourceTaskId="task-7"))["items"]
        assert [a["originalFilename"] for a in items] == ["brief.txt", "render.svg"]
        rendered = items[1]
        assert rendered["id"] == job["resultAssetId"]
        assert rendered["createdByJobId"] == job_id and rendered["namespace"] == "generated"
        assert rendered["byteSize"] == 5000 and rendered["contentType"] == "image/svg+xml"
        assert (await listed(jobId=job_id))["items"] == [rendered]
        assert (await listed(sourceTaskId="task-9"))["items"] == []
        first = await listed(limit=2)
        assert len(first["items"]) == 2 and first["nextCursor"]
        rest = await listed(limit=2, cursor=first["nextCursor"])
        assert len(rest["items"]) == 1 and rest["nextCursor"] is None
        for bad in ({"limit": "0"}, {"cursor": "nope"}, {"status": "done"}):
            response = await client.get(assets_url(company["id"]), params=bad)
            assert error_of(response, 400)["code"] == "invalid_request"


async def test_another_companys_asset_is_404(server, company):
    globex = await create_company(server, "globex")
    theirs = (await create_token(server, globex["id"]))["token"]
    ours = (await create_token(server, company["id"]))["token"]
    async with server.client(token=ours) as client:
        asset = (await upload(client, company["id"], b"secret", "s.txt")).json()
    urls = [
        assets_url(globex["id"], asset["id"]),
        assets_url(globex["id"], asset["id"], "content"),
        assets_url(company["id"], asset["id"]),
        assets_url(company["id"], asset["id"], "content"),
    ]
    async with server.client(token=theirs) as client:
        for url in urls:
            assert error_of(await client.get(url), 404)["code"] == "not_found", url
    async with server.client() as operator:  # the operator, on the wrong company's path
        for url in urls[:2]:
            assert (await operator.get(url)).status_code == 404, url
        for bad in ("not-a-uuid", str(uuid.uuid4())):
            assert (await operator.get(assets_url(company["id"], bad))).status_code == 404


# --- redirects to the object store ------------------------------------------------------


async def test_redirect_true_answers_307_to_a_presigned_url_on_s3_and_the_bytes_on_disk(
    server, company
):
    data = os.urandom(3000)
    name = "rapport été.pdf"
    async with server.client() as client:
        asset = (await upload(client, company["id"], data, name, "application/pdf")).json()
        url = assets_url(company["id"], asset["id"], "content")
        answer = await client.get(url, params={"redirect": "true"})
        if on_disk(server):
            # No presigned URLs on the disk: the bytes, as without the parameter.
            assert answer.status_code == 200 and answer.content == data
            assert answer.headers["etag"] == f'"{asset["sha256"]}"'
        else:
            assert answer.status_code == 307, answer.text
            assert answer.content == b"" and answer.headers["cache-control"] == "no-store"
            location = answer.headers["location"]
            assert location.startswith(os.environ["AWS_ENDPOINT_URL_S3"] + "/")
            assert "X-Amz-Signature=" in location and "X-Amz-Expires=300" in location
            assert s3kit.CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in location
            async with httpx.AsyncClient(timeout=10) as anyone:  # no token: the URL is one
                direct = await anyone.get(location)
                assert direct.status_code == 200 and direct.content == data
                assert direct.headers["content-type"] == "application/pdf"
                disposition = direct.headers["content-disposition"]
                assert disposition.startswith("attachment;") and quote(name, safe="") in disposition
                part = await anyone.get(location, headers={"Range": "bytes=10-19"})
                assert part.status_code == 206 and part.content == data[10:20]
            # httpx following it drops the node's token on the way to another origin.
            followed = await client.get(url, params={"redirect": "true"}, follow_redirects=True)
            assert followed.status_code == 200 and followed.content == data
            # Signed anew (X-Amz-Date is to the second): the same object, not the same URL.
            assert str(followed.url).partition("?")[0] == location.partition("?")[0]
            assert "X-Amz-Signature=" in str(followed.url)
        # Signed for GET only, so HEAD is answered here; redirect=false is the default.
        head = await client.head(url, params={"redirect": "true"})
        assert head.status_code == 200 and head.headers["content-length"] == "3000"
        assert head.headers["etag"] == f'"{asset["sha256"]}"'
        plain = await client.get(url, params={"redirect": "false"})
        assert plain.status_code == 200 and plain.content == data


async def test_redirect_is_checked_and_hands_out_nothing_before_access_is(server, company):
    globex = await create_company(server, "globex")
    theirs = (await create_token(server, globex["id"]))["token"]
    async with server.client() as client:
        asset = (await upload(client, company["id"], b"secret", "s.txt")).json()
        url = assets_url(company["id"], asset["id"], "content")
        for bad in ("1", "yes", "True", ""):
            error = error_of(await client.get(url, params={"redirect": bad}), 400)
            assert error["message"] == f"redirect must be true or false, got {bad!r}"
        unknown = await client.get(url, params={"redirect": "true", "inline": "1"})
        assert error_of(unknown, 400)["message"] == (
            "unknown query parameter(s): inline; allowed: redirect"
        )
        missing = assets_url(company["id"], str(uuid.uuid4()), "content")
        assert (await client.get(missing, params={"redirect": "true"})).status_code == 404
        # A row whose object is gone (damage from outside): 404, not a URL to nothing.
        await server.rt.storage.delete(asset["objectKey"])
        gone = await client.get(url, params={"redirect": "true"})
        assert error_of(gone, 404)["message"] == (
            f"the content of asset {asset['id']!r} is missing"
        )
    async with server.client(token=theirs) as other:
        refused = await other.get(url, params={"redirect": "true"})
        assert error_of(refused, 404)["code"] == "not_found"
        assert "location" not in refused.headers
    async with server.client(token="") as anonymous:
        refused = await anonymous.get(url, params={"redirect": "true"})
        assert error_of(refused, 401)["code"] == "unauthorized"
        assert "location" not in refused.headers


@local_only  # it ages files by their mtime, which S3 does not let a client set
async def test_gc_over_http_deletes_an_orphan_and_keeps_a_referenced_file(server, company):
    storage = server.rt.storage
    async with server.client() as client:
        kept = (await upload(client, company["id"], b"referenced", "kept.txt")).json()
        kept_path = storage.path_of(kept["objectKey"])
        orphan_path = kept_path.parent / f"{uuid.uuid4()}-orphan.bin"
        orphan_path.write_bytes(b"crashed before its row")
        old = time.time() - ORPHAN_GRACE_SECONDS - 60
        for path in (kept_path, orphan_path):
            os.utime(path, (old, old))
        orphan = str(orphan_path.relative_to(storage.root))

        dry = await client.post("/api/gc", json={"dryRun": True})
        assert dry.status_code == 200, dry.text
        assert dry.json()["deleted"] == [orphan] and orphan_path.exists()
        response = await client.post("/api/gc")
        assert response.status_code == 200
        report = response.json()
        assert report["deleted"] == [orphan] and report["deletedFiles"] == 1
        assert report["deletedBytes"] == len(b"crashed before its row")
        assert report["referencedFiles"] == 1 and report["dryRun"] is False
        assert not orphan_path.exists() and kept_path.read_bytes() == b"referenced"
        bad = await client.post("/api/gc", json={"dryRun": "yes"})
        assert error_of(bad, 400)["code"] == "invalid_request"


async def test_request_bodies_flow_with_backpressure_and_a_raisable_limit():
    body = FlowControlledBody(expected_content_length=None, max_content_length=100)
    fed: list[int] = []

    async def client_side() -> None:
        for i in range(BUFFERED_CHUNKS + 3):
            await body.feed(b"x" * 30)
            fed.append(i)
        body.finish()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_side)
        await trio.testing.wait_all_tasks_blocked()
        # Nobody reads: the sender is held once the small buffer is full.
        assert len(fed) == BUFFERED_CHUNKS
        body.max_content_length = 10_000  # a view raises its own limit before reading
        received = [chunk async for chunk in body]
    assert len(received) == BUFFERED_CHUNKS + 3

    small = FlowControlledBody(expected_content_length=None, max_content_length=50)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(small.feed, b"x" * 60)
        with pytest.raises(RequestEntityTooLarge):
            await small
    announced = FlowControlledBody(expected_content_length=51, max_content_length=50)
    assert announced.announced_too_large
    with pytest.raises(RequestEntityTooLarge):
        await anext(announced)


# --- large files, memory measured --------------------------------------------------------


class PeakRss:
    """This process's resident set size sampled from a thread every 2 ms, so the peak
    is caught whatever the event loop is doing. `growth` is peak minus the start."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.baseline = self.peak = self.read()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def read() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.read())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.read())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


needs_proc = pytest.mark.skipif(not HAVE_PROC, reason="measures RSS through /proc")


@pytest.mark.slow
@needs_proc
async def test_600_mib_through_demo_render_fails_cleanly_at_the_500_mib_cap(server, company):
    rt = server.rt
    with PeakRss() as rss:
        job = await rt.submit(company["id"], "demo.render", {"bytes": 600 * MiB, "chunk": MiB})
        failed = await rt.wait(job.id, timeout=120)
    assert failed.status.value == "failed"
    assert failed.error_message == (
        "asset exceeds the 500 MiB (524288000 bytes) limit for namespace 'generated'"
    )
    assert failed.result_asset_id is None
    assert stored(server) == []  # no partial object, no temporary, no unfinished upload
    assert (await rt.list_assets(company["id"])).items == []
    assert rss.growth < 64 * MiB, f"RSS grew {rss.growth / MiB:.1f} MiB"


@pytest.mark.slow
@needs_proc
async def test_a_200_mib_asset_downloads_to_its_sha256(server, company):
    rt = server.rt
    job = await rt.submit(company["id"], "demo.render", {"bytes": 200 * MiB, "chunk": MiB})
    done = await rt.wait(job.id, timeout=120)
    assert done.status.value == "done", done.error_message
    asset = await rt.get_asset(done.result_asset_id, company["id"])
    assert asset.byte_size == 200 * MiB
    digest, size = hashlib.sha256(), 0
    with PeakRss() as rss:
        async with server.client() as client:
            url = assets_url(company["id"], asset.id, "content")
            async with client.stream("GET", url) as response:
                assert response.status_code == 200
                assert response.headers["content-length"] == str(200 * MiB)
                async for chunk in response.aiter_bytes():
                    digest.update(chunk)
                    size += len(chunk)
    assert size == 200 * MiB
    assert digest.hexdigest() == asset.sha256
    assert response.headers["etag"] == f'"{asset.sha256}"'
    assert rss.growth < 64 * MiB, f"RSS grew {rss.growth / MiB:.1f} MiB"
    with trio.fail_after(5):
        assert await rt.storage.exists(asset.object_key)
