"""Garbage collection of stored objects that no row refers to.

An object can lose its row only by a crash (or a kill) between its commit and the
commit of its row, or a write interrupted so hard its cleanup never ran (leaving a
temporary). `collect_garbage` asks the backend for everything of the layout (`scan`),
asks the store which of the objects it found have rows, and has the backend delete
the others (`remove`) once they are older than `older_than` seconds (an hour by
default). The grace keeps it off objects whose row is about to be committed: a
running job keeps its not-yet-committed files fresh (`JobAssets.keep_fresh`), and a
write in progress refreshes its temporary with every buffer it writes.

Which objects have rows, the grace, dry runs and the report are the same on every
backend, so they are here; how objects are listed, aged and deleted (and what
"temporary" means) is the backend's. Memory stays flat: the backend lists in batches,
and each batch is settled before the next is read.
"""

from __future__ import annotations

import logging
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from ..store.base import JobStore
from .backend import Candidate, StorageBackend
from .names import ORPHAN_GRACE_SECONDS
from .writer import AssetStorage

log = logging.getLogger("callboard.gc")

BATCH = 500
#: At most this many deleted keys are listed in a report (the counts are always whole).
LISTED = 1000


@dataclass(slots=True)
class GcReport:
    """What one run found and did. `deleted` lists object keys (temporaries by the key
    the backend lists them under: on the local disk, their path under the root), at
    most LISTED of them."""

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


async def collect_garbage(
    storage: AssetStorage,
    store: JobStore,
    *,
    older_than: float = ORPHAN_GRACE_SECONDS,
    dry_run: bool = False,
    now: float | None = None,
) -> GcReport:
    """Delete objects of the layout that no `assets` row refers to and that were last
    modified more than `older_than` seconds before `now` (Unix time; default the wall
    clock)."""
    report = GcReport(dry_run=dry_run, older_than_seconds=older_than)
    cutoff = (time.time() if now is None else now) - older_than
    backend = storage.backend
    async with aclosing(backend.scan(BATCH)) as batches:
        async for batch in batches:
            await _collect_batch(backend, store, batch, cutoff, report)
    log.info(
        "gc%s: %d files scanned, %d deleted (%d bytes)",
        " (dry run)" if dry_run else "",
        report.scanned,
        report.deleted_count,
        report.deleted_bytes,
    )
    return report


async def _collect_batch(
    backend: StorageBackend,
    store: JobStore,
    batch: list[Candidate],
    cutoff: float,
    report: GcReport,
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
        results = await backend.remove(orphans, cutoff)
    for item, deleted in results:
        if not deleted:
            report.failed += 1
            continue
        report.deleted_count += 1
        report.deleted_bytes += item.size
        if len(report.deleted) < LISTED:
            report.deleted.append(item.key)
