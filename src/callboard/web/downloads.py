"""Answering for an asset's bytes: one `Range` (RFC 9110 section 14), conditional
requests on the sha256 ETag, and a Content-Disposition that carries any name safely
(RFC 6266, `filename*` per RFC 8187)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from ..jobs import Asset
from ..storage.names import safe_filename

# At most 19 digits (any file size fits): longer is malformed, and int() of thousands
# of digits would raise rather than parse.
_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    length: int

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.start + self.length - 1}/{size}"


class Unsatisfiable(Exception):
    """A well-formed range that selects nothing of the representation (416)."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range a `Range` header asks for, or None to send the whole body: no
    header, another unit, several ranges (allowed: a server may ignore Range) or a
    malformed one (which RFC 9110 says to ignore). Raises Unsatisfiable."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - suffix), min(suffix, size))
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if last and int(last) < start:
        return None  # first > last is malformed: ignored
    if start >= size:
        raise Unsatisfiable
    return ByteRange(start, end - start + 1)


def etag_of(asset: Asset) -> str:
    return f'"{asset.sha256}"'


def etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match / If-Range comparison (weak comparison suffices for both here:
    the tag is the content's own hash)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def content_disposition(original_filename: str) -> str:
    """`attachment` always: an upload may be HTML, and must never render as a page of
    this origin. The plain `filename` is an ASCII-safe fallback; `filename*` carries
    the original name, percent-encoded, which also keeps any CR/LF out of the header."""
    fallback = safe_filename(original_filename)
    encoded = quote(original_filename, safe="!#$&+-.^_`|~")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def download_headers(asset: Asset) -> dict[str, str]:
    return {
        "ETag": etag_of(asset),
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(asset.original_filename),
        "Cache-Control": "private, no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
