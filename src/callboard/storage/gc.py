"""Garbage collection of asset files that no row refers to.

A file can lose its row only by a crash (or a kill) between the rename that puts it in
place and the commit of its row, or a write interrupted so hard its cleanup never ran
(a `.part` temporary file). `collect_garbage` walks the storage layout, asks the store
which of the files it found have rows, and deletes the others once they are older than
`older_than` seconds (an hour by default). The grace keeps it off files whose row is
about to be committed: a running job keeps its not-yet-committed files fresh
(`JobAssets.keep_fresh`), and a write in progress touches its temporary file with
every buffer it writes.

Only names of the layout are considered (`<company uuid>/<namespace>/<yyyy>/<mm>/<dd>/
<uuid>-<name>` and its `.part` files); anything else under the root is left alone, so a
storage directory pointed at the wrong place cannot lose files it does not own.
Memory stays flat: directories are read in batches from an open `scandir` iterator.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from ..store.base import JobStore
from .local import AssetStorage
from .names import NAMESPACES, OBJECT_NAME, ORPHAN_GRACE_SECONDS, TEMP_NAME

log = logging.getLogger("callboard.gc")

BATCH = 500
#: At most this many deleted keys are listed in a report (the counts are always whole).
LISTED = 1000

_COMPANY_DIR = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DATE_PARTS = (re.compile(r"\d{4}"), re.compile(r"\d{2}"), re.compile(r"\d{2}"))


@dataclass(slots=True)
class GcReport:
    """What one run found and did. `deleted` lists object keys (temporary files by their
    path under the root), at most LISTED of them."""

    dry_run: bool
    older_than_seconds: float
    scanned: int = 0
    referenced: int = 0
    too_young: int = 0
    deleted_count: int = 0
    deleted_bytes: int = 0
    deleted: list[str] = field(default_factory=list)
    failed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "olderThanSeconds": self.older_than_seconds,
            "scannedFiles": self.scanned,
            "referencedFiles": self.referenced,
            "tooYoungFiles": self.too_young,
            "deletedFiles": self.deleted_count,
            "deletedBytes": self.deleted_bytes,
            "deleted": list(self.deleted),
            "deletedListTruncated": self.deleted_count > len(self.deleted),
            "failedFiles": self.failed,
        }


@dataclass(frozen=True, slots=True)
class _Found:
    key: str  # the path under the root, with /
    path: Path
    size: int
    mtime: float
    temporary: bool


def _subdirs(path: Path, pattern: re.Pattern[str]) -> list[str]:
    try:
        with os.scandir(path) as entries:
            return sorted(
                e.name
                for e in entries
                if pattern.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
            )
    except FileNotFoundError:
        return []


def _day_dirs(root: Path) -> list[tuple[str, Path]]:
    """Every `<company>/<namespace>/<yyyy>/<mm>/<dd>` directory (a few per day of use)."""
    out = []
    namespaces = re.compile("|".join(NAMESPACES))
    for company in _subdirs(root, _COMPANY_DIR):
        for namespace in _subdirs(root / company, namespaces):
            prefixes = [f"{company}/{namespace}"]
            for pattern in _DATE_PARTS:
                prefixes = [
                    f"{prefix}/{name}"
                    for prefix in prefixes
                    for name in _subdirs(root / prefix, pattern)
                ]
            out.extend((prefix, root / prefix) for prefix in prefixes)
    return out


def _take(entries: Iterator[os.DirEntry[str]], prefix: str, limit: int) -> list[_Found]:
    """Up to `limit` layout files from an open scandir iterator (fewer: it is done)."""
    found: list[_Found] = []
    for entry in entries:
        temporary = bool(TEMP_NAME.fullmatch(entry.name))
        if not (temporary or OBJECT_NAME.fullmatch(entry.name)):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # deleted meanwhile (a failed write's cleanup)
        key = f"{prefix}/{entry.name}"
        found.append(_Found(key, Path(entry.path), info.st_size, info.st_mtime, temporary))
        if len(found) >= limit:
            break
    return found


def _delete(found: list[_Found], cutoff: float) -> list[tuple[_Found, bool]]:
    """Delete each file unless it changed since it was seen; (file, deleted?)."""
    out = []
    for item in found:
        try:
            # A temporary file still being written is touched by every flush: re-check.
            if os.stat(item.path, follow_symlinks=False).st_mtime >= cutoff:
                continue
            os.unlink(item.path)
            out.append((item, True))
        except FileNotFoundError:
            continue
        except OSError:
            log.warning("gc could not delete %s", item.path, exc_info=True)
            out.append((item, False))
    return out


async def collect_garbage(
    storage: AssetStorage,
    store: JobStore,
    *,
    older_than: float = ORPHAN_GRACE_SECONDS,
    dry_run: bool = False,
    now: float | None = None,
) -> GcReport:
    """Delete layout files that no `assets` row refers to and that were last modified
    more than `older_than` seconds before `now` (Unix time; default the wall clock)."""
    report = GcReport(dry_run=dry_run, older_than_seconds=older_than)
    cutoff = (time.time() if now is None else now) - older_than
    for prefix, directory in await trio.to_thread.run_sync(_day_dirs, storage.root):
        try:
            entries = await trio.to_thread.run_sync(os.scandir, directory)
        except FileNotFoundError:
            continue
        try:
            while batch := await trio.to_thread.run_sync(_take, entries, prefix, BATCH):
                await _collect_batch(store, batch, cutoff, report)
        finally:
            entries.close()
    log.info(
        "gc%s: %d files scanned, %d deleted (%d bytes)",
        " (dry run)" if dry_run else "",
        report.scanned,
        report.deleted_count,
        report.deleted_bytes,
    )
    return report


async def _collect_batch(
    store: JobStore, batch: list[_Found], cutoff: float, report: GcReport
) -> None:
    report.scanned += len(batch)
    keys = [item.key for item in batch if not item.temporary]
    referenced = await store.existing_asset_keys(keys) if keys else set()
    report.referenced += len(referenced)
    orphans = []
    for item in batch:
        if item.key in referenced:
            continue
        if item.mtime >= cutoff:
            report.too_young += 1
        else:
            orphans.append(item)
    if report.dry_run:
        results = [(item, True) for item in orphans]
    else:
        results = await trio.to_thread.run_sync(_delete, orphans, cutoff)
    for item, deleted in results:
        if not deleted:
            report.failed += 1
            continue
        report.deleted_count += 1
        report.deleted_bytes += item.size
        if len(report.deleted) < LISTED:
            report.deleted.append(item.key)
