"""A multipart/form-data upload read as a stream: one file, in the field `file`.

werkzeug's sans-IO MultipartDecoder parses the body as it arrives (from the
flow-controlled body in `body.py`), so the file's bytes go on to storage chunk by
chunk and the whole body is never in memory. The form is strict, as JSON bodies are:
another field, a second file or no file is a 400. The file's chunks end only once the
whole body has been read and found well-formed, so storage commits nothing for a
body that turns out bad after the file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import trio
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import (
    NEED_DATA,
    Data,
    Epilogue,
    Event,
    Field,
    File,
    MultipartDecoder,
    Preamble,
)

from .body import FlowControlledBody
from .errors import ApiError, bad_request

FIELD = "file"
#: What a body may hold beyond the file itself: boundaries and the part's headers.
MULTIPART_OVERHEAD = 64 * 1024
#: A client that sends nothing for this long mid-upload gets 408 (Quart's BODY_TIMEOUT).
IDLE_SECONDS = 60.0
_MAX_BUFFER = 1024 * 1024  # the decoder's own buffer: part headers and a partial boundary
_MAX_PARTS = 16


@dataclass(frozen=True, slots=True)
class FilePart:
    filename: str
    content_type: str


def boundary_of(content_type: str | None) -> bytes:
    mimetype, options = parse_options_header(content_type or "")
    boundary = options.get("boundary", "")
    if mimetype != "multipart/form-data" or not 1 <= len(boundary) <= 70:
        raise bad_request(
            "send the file as multipart/form-data (with a boundary), in the field 'file'"
        )
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise bad_request("the multipart boundary must be ASCII") from None


class MultipartUpload:
    def __init__(self, body: FlowControlledBody, boundary: bytes) -> None:
        self._body = body
        self._decoder = MultipartDecoder(boundary, _MAX_BUFFER, max_parts=_MAX_PARTS)

    async def _next(self) -> Event:
        while True:
            try:
                event = self._decoder.next_event()
            except ValueError as exc:
                raise bad_request(f"malformed multipart body: {exc}") from None
            if event is not NEED_DATA:
                return event
            with trio.move_on_after(IDLE_SECONDS) as idle:
                chunk = await anext(self._body, None)
            if idle.cancelled_caught:
                raise ApiError(408, "timeout", f"no upload data for {IDLE_SECONDS:g} seconds")
            try:
                self._decoder.receive_data(chunk)  # None: the body ended
            except RequestEntityTooLarge:
                # The decoder holds only what it has not parsed: a boundary or part
                # headers this far apart mean the body is not the form it claims.
                raise bad_request(
                    "malformed multipart body: no boundary or part headers where expected"
                ) from None

    async def file_part(self) -> FilePart:
        """Read up to the start of the file's bytes."""
        while True:
            event = await self._next()
            if isinstance(event, Preamble):
                continue
            if isinstance(event, File) and event.name == FIELD:
                if not event.filename:
                    raise bad_request("the field 'file' holds no file (its filename is empty)")
                content_type = event.headers.get("Content-Type") or "application/octet-stream"
                return FilePart(event.filename, content_type)
            if isinstance(event, Field | File):
                raise bad_request(
                    f"unexpected form field {event.name!r}: send one file, in the field 'file'"
                )
            raise bad_request("no file in the form: send one file, in the field 'file'")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes; ends after the whole body was read and nothing followed."""
        while True:
            event = await self._next()
            if isinstance(event, Data):
                if event.data:
                    yield event.data
                if not event.more_data:
                    break
        event = await self._next()
        if not isinstance(event, Epilogue):
            name = getattr(event, "name", "?")
            raise bad_request(f"unexpected form field {name!r} after the file: send one file")
