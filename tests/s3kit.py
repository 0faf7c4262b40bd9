"""A real S3 API for tests: moto's standalone server (`moto[server]`, in the dev extra)
in its own process on a loopback port, and a fresh bucket per test. boto3 talks to it
over HTTP exactly as it would to AWS or MinIO; nothing is mocked in-process."""

from __future__ import annotations

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
