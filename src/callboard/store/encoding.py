"""Encodings every SQL store shares: list cursors and job input as JSON text.

A list cursor is urlsafe base64 of "v1|<created_at>|<id>", the key of the last row
of a page; it is opaque to clients, and a cursor the store did not issue is
`InvalidRequest`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from ..errors import InvalidRequest
from ..jobs import iso, parse_iso


class Keyed(Protocol):
    id: str
    created_at: datetime


def encode_cursor(row: Keyed) -> str:
    raw = f"v1|{iso(row.created_at)}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) of the row a page ended at."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, created_at, row_id = raw.split("|")
        at = parse_iso(created_at)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("invalid cursor") from None
    if version != "v1" or not row_id or at is None:
        raise InvalidRequest("invalid cursor")
    return at, row_id


def input_json(value: Mapping[str, Any]) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"input must be JSON-serialisable: {exc}") from None
