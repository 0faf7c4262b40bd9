"""The S3 backend of asset storage: objects in a bucket of any S3-compatible store (AWS
S3, MinIO, Ceph RGW, Cloudflare R2, ...), so every node of a cluster serves every asset.

Chosen by `--storage-url s3://bucket/prefix`. Where to connect and as whom comes only
from the standard AWS settings, read by boto3 itself: `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_PROFILE`, `AWS_REGION` (or
`AWS_DEFAULT_REGION`), `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, and the shared
config and credentials files. No message or log line here carries a credential:
errors name the bucket, the key and the service's error code.

The client is boto3, in trio worker threads (one hop per part or read chunk). It was
chosen by measurement against obstore (also in threads) and aiobotocore (on
trio-asyncio), docs/benchmarks.md "S3 clients": obstore spent less CPU on writes, but
its Python API can neither abort a multipart upload nor list unfinished ones, which a
write that fails must do and gc must see; boto3 does both, presigns URLs, and reads
every standard AWS setting.

- A write gathers bytes into PART_BYTES parts and uploads each as it fills (the first
  one full starts the multipart upload); memory is about one part plus the writer's
  flush buffer. An object smaller than one part is one PUT at commit. Each buffer is
  hashed in the same worker-thread hop that takes it, as on the local disk.
- A failed, cancelled or over-cap write aborts its multipart upload; one interrupted
  while starting or completing it may leave an upload or an object behind, which gc
  deletes (unfinished uploads and objects without a row, older than its grace).
- gc lists objects of the layout under the prefix and unfinished multipart uploads;
  an upload counts as young while a part was uploaded within the grace.
- `touch` copies a committed object onto itself (new metadata, same bytes, done by
  the service), which renews its LastModified: gc's age of an object.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

import trio

from ..config import S3Location
from ..errors import StorageUnavailable
from .backend import Buffer, Candidate
from .names import OBJECT_KEY, PRESIGN_SECONDS, check_object_key

log = logging.getLogger("callboard.storage")

#: Bytes per uploaded part (S3 wants at least 5 MiB for every part but the last, and
#: at most 10,000 parts: objects up to 78 GiB).
PART_BYTES = 8 << 20
#: How long a node's start waits for the bucket to answer before starting anyway.
START_CHECK_SECONDS = 5.0
#: Bytes per read of a download's body.
READ_CHUNK = 1 << 20
#: A multipart upload's key in gc's listing: `<object key>?uploadId=<id>`.
UPLOAD_MARK = "?uploadId="

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code"))
    return None


def _is_missing(exc: BaseException) -> bool:
    return _error_code(exc) in _MISSING


def _describe(exc: BaseException) -> str:
    """What went wrong, without anything of the request (botocore's messages name the
    operation and the service's code and message, never the credentials)."""
    return str(exc) or type(exc).__name__


def make_client() -> Any:
    """An S3 client configured only from the standard AWS settings. boto3 is imported
    here so that nodes on the local disk do not need it."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:  # pragma: no cover - the s3 extra is in the dev install
        raise StorageUnavailable("s3:// storage needs boto3: pip install 'callboard[s3]'") from None
    config = Config(
        # Enough for the worker threads trio may run at once against one node's client.
        max_pool_connections=32,
        # Presigned URLs too: botocore would otherwise sign them with the deprecated
        # SigV2 in some regions, which newer buckets and other stores refuse.
        signature_version="s3v4",
        connect_timeout=10,
        read_timeout=60,
        # Three tries in about two seconds: an upload against a store that is down
        # answers 503 promptly instead of holding its client for the full backoff.
        retries={"mode": "standard", "max_attempts": 3},
        # Checksums only where the service requires them: several S3-compatible stores
        # refuse the newer default trailing checksums, and sha256 is ours anyway.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    region = os.environ.get("AWS_REGION") or None  # botocore reads AWS_DEFAULT_REGION
    return boto3.session.Session().client("s3", region_name=region, config=config)


class S3Writer:
    """One object being written: a buffer until a part fills, then a multipart upload."""

    def __init__(self, backend: S3Backend, key: str, update: Callable[[Buffer], None]) -> None:
        self._backend = backend
        self._key = key
        self._update = update
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._committing = False
        # Worker threads abandoned by a cancel may still run: one at a time touches us.
        self._lock = threading.Lock()

    async def write(self, data: Buffer) -> None:
        await self._backend.run(self._take, bytes(data))

    def _take(self, data: bytes) -> None:
        with self._lock:
            self._update(data)
            self._buffer += data
            if len(self._buffer) >= PART_BYTES:
                # The whole buffer is the part (parts may differ in size): no copy.
                part, self._buffer = self._buffer, bytearray()
                self._send_part(part)

    def _send_part(self, part: bytes | bytearray) -> None:
        b = self._backend
        if self._upload_id is None:
            answer = b.call("create_multipart_upload", Key=b.full_key(self._key))
            self._upload_id = answer["UploadId"]
        number = len(self._parts) + 1
        answer = b.call(
            "upload_part",
            Key=b.full_key(self._key),
            UploadId=self._upload_id,
            PartNumber=number,
            Body=part,
        )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def commit(self) -> None:
        self._committing = True
        await self._backend.run(self._finish)

    def _finish(self) -> None:
        with self._lock:
            b = self._backend
            if self._upload_id is None:
                b.call("put_object", Key=b.full_key(self._key), Body=self._buffer)
                return
            if self._buffer or not self._parts:
                part, self._buffer = self._buffer, bytearray()
                self._send_part(part)
            b.call(
                "complete_multipart_upload",
                Key=b.full_key(self._key),
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )

    async def abort(self) -> None:
        self._buffer = bytearray()
        await self._backend.run(self._discard)

    def _discard(self) -> None:
        b = self._backend
        if self._upload_id is not None:
            try:
                b.call(
                    "abort_multipart_upload", Key=b.full_key(self._key), UploadId=self._upload_id
                )
            except StorageUnavailable as exc:
                if not _is_missing(exc.__cause__ or exc):
                    log.warning("could not abort the upload of %s; gc will: %s", self._key, exc)
        if self._committing:
            b.delete_now(self._key)

    async def touch(self) -> None:
        """Nothing to do: gc ages an upload by its last part, renewed by every write."""
        await trio.lowlevel.checkpoint()


class S3Backend:
    """Objects in one bucket under one prefix (a `StorageBackend`)."""

    def __init__(self, location: S3Location, client: Any | None = None) -> None:
        self.location = location
        self._client = client if client is not None else make_client()
        # One check at a time: a check given up on (the probe's timeout) leaves its
        # thread to the client's own timeouts, and a service that stopped answering
        # must not collect one such thread per probe.
        self._checks = trio.CapacityLimiter(1)

    @property
    def url(self) -> str:
        return self.location.url

    def full_key(self, key: str) -> str:
        return f"{self.location.prefix}/{key}" if self.location.prefix else key

    def _layout_key(self, full_key: str) -> str | None:
        prefix = self.location.prefix
        if prefix:
            if not full_key.startswith(prefix + "/"):
                return None
            full_key = full_key[len(prefix) + 1 :]
        return full_key if OBJECT_KEY.fullmatch(full_key) else None

    # --- calling the service ---------------------------------------------------------

    def call(self, operation: str, **params: Any) -> Any:
        """One request (in a worker thread), with the bucket filled in; any failure of
        the service or the network is StorageUnavailable, the original its __cause__."""
        try:
            return getattr(self._client, operation)(Bucket=self.location.bucket, **params)
        except Exception as exc:
            raise StorageUnavailable(
                f"object storage {self.location.url}: {_describe(exc)}"
            ) from exc

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        # Abandoned on cancel: a cancelled write, and cleanup's deadline, must be able to
        # walk away from an endpoint that stopped answering; the thread ends with the
        # client's own timeouts.
        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)

    def delete_now(self, key: str) -> None:
        try:
            self.call("delete_object", Key=self.full_key(key))
        except StorageUnavailable as exc:
            log.warning("could not delete %s; gc will: %s", key, exc)

    async def check(self) -> None:
        """Fail now, with the service's reason, if the bucket cannot be reached."""
        await trio.to_thread.run_sync(
            lambda: self.call("head_bucket"), abandon_on_cancel=True, limiter=self._checks
        )

    async def check_at_start(self) -> None:
        """A node's first look at its bucket. A bucket that does not exist or refuses
        these credentials is a mistake in the settings: StorageUnavailable, so the node
        does not start. An endpoint that does not answer may be a passing outage: a
        warning, and the node starts (uploads answer 503 until the store is back, and
        jobs that write assets fail their attempt and are retried). One that takes
        connections and never answers gets START_CHECK_SECONDS, not the client's own
        timeouts (minutes, with its retries), before the node starts anyway."""
        try:
            with trio.move_on_after(START_CHECK_SECONDS) as scope:
                await self.check()
            if scope.cancelled_caught:
                log.warning(
                    "object storage %s did not answer within %g s; starting anyway, "
                    "assets are unavailable until it answers",
                    self.location.url,
                    START_CHECK_SECONDS,
                )
        except StorageUnavailable as exc:
            code = _error_code(exc.__cause__) if exc.__cause__ is not None else None
            if code is not None:
                raise StorageUnavailable(
                    f"{exc} (check the bucket name in --storage-url and the AWS_* settings)"
                ) from exc.__cause__
            log.warning("%s; starting anyway, assets are unavailable until it answers", exc)

    # --- the StorageBackend protocol ---------------------------------------------------

    async def start_write(self, key: str, update: Callable[[Buffer], None]) -> S3Writer:
        return S3Writer(self, key, update)

    async def read(
        self, key: str, start: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        if length == 0:
            return
        params: dict[str, Any] = {"Key": self.full_key(key)}
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            params["Range"] = f"bytes={start}-{end}"
        try:
            answer = await self.run(lambda: self.call("get_object", **params))
        except StorageUnavailable as exc:
            if _is_missing(exc.__cause__ or exc):
                raise FileNotFoundError(f"no object {key}") from exc
            raise
        body = answer["Body"]
        try:
            while True:
                chunk = await self.run(self._read_body, body)
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    def _read_body(self, body: Any) -> bytes:
        try:
            return body.read(READ_CHUNK)
        except Exception as exc:
            raise StorageUnavailable(
                f"object storage {self.location.url}: reading failed: {_describe(exc)}"
            ) from exc

    async def exists(self, key: str) -> bool:
        try:
            await self.run(lambda: self.call("head_object", Key=self.full_key(key)))
        except StorageUnavailable as exc:
            if _is_missing(exc.__cause__ or exc):
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        await self.run(self.delete_now, key)

    async def touch(self, keys: Sequence[str]) -> None:
        def touch_all() -> None:
            for key in keys:
                full = self.full_key(key)
                try:
                    self.call(
                        "copy_object",
                        Key=full,
                        CopySource={"Bucket": self.location.bucket, "Key": full},
                        MetadataDirective="REPLACE",
                        Metadata={"touched": str(int(time.time()))},
                    )
                except StorageUnavailable as exc:
                    if not _is_missing(exc.__cause__ or exc):
                        log.warning("could not refresh %s for gc: %s", key, exc)

        await self.run(touch_all)

    def presigned_url(self, key: str, *, filename: str, content_type: str) -> str:
        """A URL that downloads the object for PRESIGN_SECONDS, without credentials;
        computed locally (no request, unless expiring credentials must be refreshed
        first)."""
        full_key = self.full_key(check_object_key(key))
        disposition = f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
        try:
            return self._client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.location.bucket,
                    "Key": full_key,
                    "ResponseContentDisposition": disposition,
                    "ResponseContentType": content_type,
                },
                ExpiresIn=PRESIGN_SECONDS,
            )
        except Exception as exc:  # no credentials to sign with, or they failed to refresh
            raise StorageUnavailable(
                f"object storage {self.location.url}: cannot sign a download URL: {_describe(exc)}"
            ) from exc

    # --- gc --------------------------------------------------------------------------

    async def scan(self, batch: int) -> AsyncGenerator[list[Candidate], None]:
        pages = self._pages("list_objects_v2", "Contents")
        try:
            while (page := await self.run(next, pages, None)) is not None:
                found = []
                for item in page:
                    key = self._layout_key(item["Key"])
                    if key is not None:
                        mtime = item["LastModified"].timestamp()
                        found.append(Candidate(key, item["Size"], mtime, False))
                for start in range(0, len(found), batch):
                    yield found[start : start + batch]
        finally:
            pages.close()
        uploads = self._pages("list_multipart_uploads", "Uploads")
        try:
            while (page := await self.run(next, uploads, None)) is not None:
                found = await self.run(self._upload_candidates, page)
                for start in range(0, len(found), batch):
                    yield found[start : start + batch]
        finally:
            uploads.close()

    def _pages(self, operation: str, field: str) -> Iterator[list[dict[str, Any]]]:
        """A listing's pages, read one page per `next` (each in a worker thread)."""
        prefix = f"{self.location.prefix}/" if self.location.prefix else ""
        paginator = self._client.get_paginator(operation)
        pages = iter(paginator.paginate(Bucket=self.location.bucket, Prefix=prefix))
        while True:
            try:
                page = next(pages)
            except StopIteration:
                return
            except Exception as exc:
                raise StorageUnavailable(
                    f"object storage {self.location.url}: listing failed: {_describe(exc)}"
                ) from exc
            yield page.get(field, [])

    def _upload_candidates(self, page: list[dict[str, Any]]) -> list[Candidate]:
        found = []
        for item in page:
            key = self._layout_key(item["Key"])
            if key is None:
                continue
            # Aged by its last part as well as its start: a long write keeps uploading
            # parts (and some services report no useful start time).
            try:
                active = self._upload_active_since(key, item["UploadId"])
            except StorageUnavailable as exc:
                if _is_missing(exc.__cause__ or exc):
                    continue  # finished or aborted since the listing
                raise
            mtime = max(item["Initiated"].timestamp(), active)
            found.append(Candidate(f"{key}{UPLOAD_MARK}{item['UploadId']}", 0, mtime, True))
        return found

    async def remove(
        self, candidates: Sequence[Candidate], cutoff: float
    ) -> list[tuple[Candidate, bool]]:
        return await self.run(self._remove, list(candidates), cutoff)

    def _remove(self, candidates: list[Candidate], cutoff: float) -> list[tuple[Candidate, bool]]:
        out = []
        for item in candidates:
            try:
                if item.temporary:
                    key, _, upload_id = item.key.partition(UPLOAD_MARK)
                    if self._upload_active_since(key, upload_id) >= cutoff:
                        continue
                    self.call("abort_multipart_upload", Key=self.full_key(key), UploadId=upload_id)
                else:
                    # Written or touched since the listing: young again.
                    head = self.call("head_object", Key=self.full_key(item.key))
                    if head["LastModified"].timestamp() >= cutoff:
                        continue
                    self.call("delete_object", Key=self.full_key(item.key))
                out.append((item, True))
            except StorageUnavailable as exc:
                if _is_missing(exc.__cause__ or exc):
                    continue
                log.warning("gc could not delete %s: %s", item.key, exc)
                out.append((item, False))
        return out

    def _upload_active_since(self, key: str, upload_id: str) -> float:
        """The time of the upload's last part (0: none)."""
        latest = 0.0
        marker = 0
        while True:
            answer = self.call(
                "list_parts", Key=self.full_key(key), UploadId=upload_id, PartNumberMarker=marker
            )
            for part in answer.get("Parts", []):
                latest = max(latest, part["LastModified"].timestamp())
            if not answer.get("IsTruncated"):
                return latest
            marker = answer["NextPartNumberMarker"]
