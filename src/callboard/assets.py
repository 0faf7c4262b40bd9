"""The asset record: one stored file, as its `assets` row describes it (DESIGN.md
section 5). The bytes live in `callboard.storage`; this is what the store keeps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .jobs import iso


@dataclass(frozen=True, slots=True)
class Asset:
    """A stored file. `object_key` is its path under the storage root; `sha256` the hex
    digest of its bytes; `original_filename` the name it was given, minus control
    characters. `created_by_job_id` is None for uploads."""

    id: str
    company_id: str
    namespace: str
    object_key: str
    content_type: str
    byte_size: int
    sha256: str
    original_filename: str
    source_task_id: str | None
    created_by_job_id: str | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "companyId": self.company_id,
            "namespace": self.namespace,
            "objectKey": self.object_key,
            "contentType": self.content_type,
            "byteSize": self.byte_size,
            "sha256": self.sha256,
            "originalFilename": self.original_filename,
            "sourceTaskId": self.source_task_id,
            "createdByJobId": self.created_by_job_id,
            "createdAt": iso(self.created_at),
        }
