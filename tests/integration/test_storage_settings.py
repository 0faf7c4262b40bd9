"""`--storage-url` as an operator meets it: a node on S3 storage starts and serves, a
mistake in the URL or the bucket stops it with one line (exit 2) before it writes
anything, and no line it prints carries the secret key."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import s3kit
from integration.serve_process import serve

pytestmark = pytest.mark.slow

SECRET = s3kit.CREDENTIALS["AWS_SECRET_ACCESS_KEY"]


def run_serve(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callboard", "serve", "--bind", "127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "CALLBOARD_DATA_DIR": str(tmp_path / "data")},
    )


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://bucket/x", "expected file:///absolute/path or s3://bucket/prefix"),
        ("file://relative/x", "three slashes"),
        (f"s3://key:{SECRET}@bucket/x", "carries no credentials"),
        ("s3://bucket/x?endpoint=http://h", "AWS_ENDPOINT_URL_S3"),
        ("s3://bu cket/x", "not a bucket name"),
        ("s3://bucket/a/../b", "'..' segment"),
    ],
)
def test_a_bad_storage_url_is_one_line_and_exit_2(tmp_path, url, words):
    done = run_serve(tmp_path, "--storage-url", url)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("callboard: ")
    assert SECRET not in done.stderr
    assert not (tmp_path / "data").exists()  # nothing written


def test_a_bucket_that_does_not_exist_stops_the_node_with_one_line(tmp_path, s3_url):
    done = run_serve(tmp_path, "--storage-url", "s3://no-such-bucket-here/assets")
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "s3://no-such-bucket-here/assets" in last and "HeadBucket" in last
    assert "AWS_* settings" in last
    assert SECRET not in done.stderr and "Traceback" not in done.stderr


def test_a_node_on_s3_stores_uploads_in_the_bucket(tmp_path, s3_url, s3_endpoint):
    bucket, _, prefix = s3_url.removeprefix("s3://").partition("/")
    with serve(tmp_path, "--storage-url", s3_url, "--workers", "1") as node:
        assert node.cli("companies", "create", "acme").returncode == 0
        (tmp_path / "hello.txt").write_bytes(b"hello from s3")
        upload = node.cli("assets", "upload", "hello.txt", "--company", "acme", "--json")
        assert upload.returncode == 0, upload.stderr
        listed = s3kit.client(s3_endpoint).list_objects_v2(Bucket=bucket)["Contents"]
        assert [item["Size"] for item in listed] == [13]
        assert listed[0]["Key"].startswith(f"{prefix}/") and listed[0]["Key"].endswith("hello.txt")
        assert not (node.data_dir / "assets").exists()  # nothing on the local disk
    assert SECRET not in "".join(node.log)
