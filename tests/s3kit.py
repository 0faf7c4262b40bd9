"""A real S3 API for tests: moto's standalone server (`moto[server]`, in the dev extra)
in its own process on a loopback port, and a fresh bucket per test. boto3 talks to it
over HTTP exactly as it would to AWS or MinIO; nothing is mocked in-process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

#: What every test that talks to the server puts in its environment (and so in the
#: environment of the nodes it starts): only the standard AWS settings.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "callboard-test-key",
    "AWS_SECRET_ACCESS_KEY": "callboard-test-secret-do-not-log",
    "AWS_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _moto_command() -> list[str]:
    script = Path(sys.executable).with_name("moto_server")
    if script.exists():
        return [str(script)]
    found = shutil.which("moto_server")
    if found is None:
        raise RuntimeError("moto_server is not installed: pip install -e '.[dev]'")
    return [found]


@contextmanager
def moto_server() -> Iterator[str]:
    """Start the server, yield its endpoint URL, stop it."""
    port = _free_port()
    proc = subprocess.Popen(
        [*_moto_command(), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint + "/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on {endpoint}") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def environment(endpoint: str) -> dict[str, str]:
    return {**CREDENTIALS, "AWS_ENDPOINT_URL_S3": endpoint}


def client(endpoint: str):  # type: ignore[no-untyped-def]
    """A boto3 client of the test's own, to look behind the backend's back."""
    import boto3

    return boto3.session.Session(
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=CREDENTIALS["AWS_REGION"],
    ).client("s3", endpoint_url=endpoint)


def new_bucket(endpoint: str) -> str:
    name = f"cb-{uuid.uuid4().hex[:20]}"
    client(endpoint).create_bucket(Bucket=name)
    return name


def drop_bucket(endpoint: str, name: str) -> None:
    """Delete a bucket and all it holds: moto keeps every byte in memory until the
    session ends."""
    s3 = client(endpoint)
    try:
        s3.head_bucket(Bucket=name)
    except s3.exceptions.ClientError:
        return  # the test deleted it itself
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=name):
        for upload in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=item["Key"])
    s3.delete_bucket(Bucket=name)


#: How `stored` marks a multipart upload that was started and never completed.
UNFINISHED = " (unfinished upload)"


def stored(url: str, endpoint: str | None = None) -> list[str]:
    """What an `s3://bucket/prefix` URL holds, listed by a client of the test's own:
    every object's key relative to the prefix, and every unfinished multipart upload
    (its key + UNFINISHED). The endpoint defaults to the environment's (`s3_url`)."""
    from callboard.config import parse_s3_url

    location = parse_s3_url(url)
    s3 = client(endpoint or os.environ["AWS_ENDPOINT_URL_S3"])
    prefix = f"{location.prefix}/" if location.prefix else ""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix):
        found += [item["Key"].removeprefix(prefix) for item in page.get("Contents", [])]
    for page in s3.get_paginator("list_multipart_uploads").paginate(
        Bucket=location.bucket, Prefix=prefix
    ):
        found += [item["Key"].removeprefix(prefix) + UNFINISHED for item in page.get("Uploads", [])]
    return sorted(found)


def contents(url: str) -> list[str]:
    """What a storage URL holds, looked at behind the backend's back, the same way for
    both backends: on file://, every file under the directory (paths relative to it,
    a write's temporary file included); on s3://, `stored(url)`."""
    if url.startswith("file://"):
        from callboard.config import local_path

        root = local_path(url)
        if not root.exists():
            return []
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return stored(url)
