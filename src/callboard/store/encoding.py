"""Encodings every store shares: list cursors and job input as JSON text.

A list cursor is the key of the last row of a page: its `created_at` in microseconds
since the Unix epoch, an underscore, and its id (`1767225600000000_5d1c9b7e-...`).
Clients treat it as opaque, but its shape is public (`jobs.CURSOR_PATTERN`, stated in the
OpenAPI document), and every string of that shape is a position in the keyset order,
even one no row has: so the document can say exactly which cursors the server takes,
and a cursor of another shape is `InvalidRequest`.
"""

from __future__ import annotations

import heapq
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from ..errors import InvalidRequest
from ..jobs import CURSOR_PATTERN, is_text


class Keyed(Protocol):
    id: str
    created_at: datetime


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(row: Keyed) -> str:
    micros = (row.created_at - _EPOCH) // _ONE_MICROSECOND
    return f"{micros}_{row.id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) of the row a page ended at."""
    if not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor):
        raise InvalidRequest(
            "invalid cursor: pass the nextCursor of a previous page (<microseconds>_<id>)"
        )
    micros, row_id = cursor.split("_", 1)
    return _EPOCH + timedelta(microseconds=int(micros)), row_id


K = TypeVar("K", bound=Keyed)


def newest_first(lists: Iterable[Sequence[K]], limit: int) -> list[K]:
    """The first `limit` rows of lists each newest first (created_at desc, id desc),
    merged in that order: a list of several statuses reads each status's rows from its
    own index and merges them here, rather than filter one order through them all."""
    merged = heapq.merge(*lists, key=lambda row: (row.created_at, row.id), reverse=True)
    return list(itertools.islice(merged, limit))


def input_json(value: Mapping[str, Any]) -> str:
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"input must be JSON-serialisable: {exc}") from None
    if not is_text(text):
        raise InvalidRequest("input must be valid Unicode text: it holds a lone surrogate")
    return text
