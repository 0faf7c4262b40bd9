"""Assets: upload (streamed, capped), list, metadata, content (streamed, ranges); and
the operator's gc of orphaned files."""

from __future__ import annotations

import functools
import logging

import trio
from quart import Blueprint, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import AssetTooLarge, CallboardError
from ..jobs import Asset
from ..storage.names import UPLOADS
from .auth import Principal
from .body import FlowControlledBody
from .context import company_for, ctx, is_uuid, operator, principal
from .downloads import (
    ByteRange,
    Unsatisfiable,
    download_headers,
    etag_matches,
    etag_of,
    parse_range,
)
from .errors import ApiError, bad_request, from_domain, not_found
from .uploads import MULTIPART_OVERHEAD, MultipartUpload, boundary_of
from .validation import (
    check_fields,
    check_query,
    parse_json,
    query_bool,
    query_int,
    require_object,
)

log = logging.getLogger("callboard.web")

assets = Blueprint("assets", __name__)

_LIST_QUERY = {"sourceTaskId", "jobId", "limit", "cursor"}
#: After refusing an upload, read (and drop) this much more of its body, for at most
#: DRAIN_SECONDS, so the answer reaches a client that is still sending.
DRAIN_BYTES = 1024 * 1024
DRAIN_SECONDS = 2.0


async def asset_for(who: Principal, company_id: str, asset_id: str) -> Asset:
    """The asset if it belongs to `company_id` (which `who` may see); 404 otherwise."""
    if not is_uuid(asset_id):
        raise not_found(f"asset {asset_id!r} not found")
    return await ctx().rt.get_asset(asset_id, company_id)


@assets.post("/api/companies/<company_id>/assets")
async def upload(company_id: str):
    who = await principal()
    company = await company_for(who, company_id)
    check_query(request.args, {"sourceTaskId"})
    rt = ctx().rt
    cap = rt.storage.cap(UPLOADS)
    body = request.body
    # This route's own limit on the body; the file's cap is checked by storage.
    body.max_content_length = cap + MULTIPART_OVERHEAD
    try:
        form = MultipartUpload(body, boundary_of(request.headers.get("Content-Type")))
        part = await form.file_part()
        asset = await rt.upload_asset(
            company,
            part.filename,
            part.content_type,
            form.chunks(),
            source_task_id=request.args.get("sourceTaskId"),
        )
    except RequestEntityTooLarge:
        await _drain(body)
        raise _closing(from_domain(AssetTooLarge(UPLOADS, cap))) from None
    except ApiError as exc:
        await _drain(body)
        raise _closing(exc) from None
    except CallboardError as exc:
        await _drain(body)
        raise _closing(from_domain(exc)) from None
    return asset.to_dict(), 201


def _closing(error: ApiError) -> ApiError:
    """A refused upload ends its connection: the client may still be sending a body
    we will not read, and only a close makes it stop and read our answer."""
    error.headers = {**error.headers, "Connection": "close"}
    return error


async def _drain(body: FlowControlledBody) -> None:
    # Also when Content-Length announced too much: a client that sends anyway is
    # blocked writing, and closing on its unread bytes would reset the connection
    # before it reads the 413. Bounded in bytes and time either way.
    with trio.move_on_after(DRAIN_SECONDS):
        await body.discard(DRAIN_BYTES)


@assets.get("/api/companies/<company_id>/assets")
async def list_assets(company_id: str):
    who = await principal()
    company = await company_for(who, company_id)
    args = request.args
    check_query(args, _LIST_QUERY)
    page = await ctx().rt.list_assets(
        company,
        source_task_id=args.get("sourceTaskId") or None,
        job_id=args.get("jobId") or None,
        limit=query_int(args, "limit", 50, 1, 500),
        cursor=args.get("cursor"),  # "" is refused, not read as the first page
    )
    return {"items": [a.to_dict() for a in page.items], "nextCursor": page.next_cursor}


@assets.get("/api/companies/<company_id>/assets/<asset_id>")
async def get_asset(company_id: str, asset_id: str):
    who = await principal()
    company = await company_for(who, company_id)
    return (await asset_for(who, company, asset_id)).to_dict()


@assets.get("/api/companies/<company_id>/assets/<asset_id>/content")
async def content(company_id: str, asset_id: str):
    who = await principal()
    company = await company_for(who, company_id)
    check_query(request.args, {"redirect"})
    redirect = query_bool(request.args, "redirect", False)
    asset = await asset_for(who, company, asset_id)
    storage = ctx().rt.storage
    if not await storage.exists(asset.object_key):
        # Rows are written after their files, so this is damage done from outside.
        log.error("asset %s: its file %s is missing", asset.id, asset.object_key)
        raise not_found(f"the content of asset {asset.id!r} is missing")
    # HEAD stays here: a presigned URL is signed for GET only, so following it with
    # HEAD would be refused by the store.
    if redirect and request.method == "GET":
        # In a thread: signing may first refresh expiring credentials (an instance
        # role, SSO), which asks the network.
        url = await trio.to_thread.run_sync(
            functools.partial(
                storage.presigned_url,
                asset.object_key,
                filename=asset.original_filename,
                content_type=asset.content_type,
            )
        )
        if url is not None:  # else: storage without such URLs (file://) serves the bytes
            # no-store: the URL is a credential, and expires in minutes.
            return Response(b"", status=307, headers={"Location": url, "Cache-Control": "no-store"})
    headers = download_headers(asset)
    if etag_matches(request.headers.get("If-None-Match"), etag_of(asset)):
        return Response(b"", status=304, headers=headers)
    size = asset.byte_size
    wanted: ByteRange | None = None
    if_range = request.headers.get("If-Range")
    if if_range is None or etag_matches(if_range, etag_of(asset)):
        try:
            wanted = parse_range(request.headers.get("Range"), size)
        except Unsatisfiable:
            raise ApiError(
                416,
                "range_not_satisfiable",
                f"the range is outside the {size} bytes of the asset",
                {"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
            ) from None
    if wanted is None:
        status, start, length = 200, 0, size
    else:
        status, start, length = 206, wanted.start, wanted.length
        headers["Content-Range"] = wanted.content_range(size)
    if request.method == "HEAD":
        response = Response(b"", status=status, headers=headers, content_type=asset.content_type)
    else:
        chunks = storage.read_chunks(asset.object_key, start, length)
        response = Response(chunks, status=status, headers=headers, content_type=asset.content_type)
        # A big download may take longer than Quart's RESPONSE_TIMEOUT
        # (docs/architecture.md, "Stack notes").
        response.timeout = None
    response.content_length = length
    return response


@assets.post("/api/gc")
async def collect_garbage():
    """Operator: delete asset files no row refers to, older than an hour. Served by the
    node because the embedded SQLite store is locked to the process serving it."""
    await operator()
    raw = await request.get_data()
    dry_run = False
    if raw.strip():
        body = require_object(parse_json(raw))
        check_fields(body, {"dryRun"})
        dry_run = body.get("dryRun", False)
        if not isinstance(dry_run, bool):
            raise bad_request("dryRun must be true or false")
    report = await ctx().rt.collect_garbage(dry_run=dry_run)
    return report.to_dict()
