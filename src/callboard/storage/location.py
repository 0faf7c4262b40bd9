"""Which backend a storage URL names, and the `AssetStorage` built on it.

`file:///absolute/path` is a directory on this machine (`local`), the default, under
the data directory; `s3://bucket/prefix` a bucket of an S3-compatible object store
(`s3`). Nodes that share one PostgreSQL queue must share their assets too: every node
on one `s3://` URL (or one `file://` path that all of them mount) serves every asset.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..config import check_storage_url, local_path, parse_s3_url
from . import local
from .backend import StorageBackend
from .writer import AssetStorage


def is_shared(url: str) -> bool:
    """Whether other machines' nodes can reach what this URL stores."""
    return not url.startswith("file://")


def same_place(a: str, b: str) -> bool:
    """Whether two storage URLs (checked) name the same objects: one directory however
    it is spelt, or one bucket and prefix."""
    if a.startswith("file://") and b.startswith("file://"):
        return local_path(a).resolve() == local_path(b).resolve()
    if a.startswith("s3://") and b.startswith("s3://"):
        return parse_s3_url(a) == parse_s3_url(b)
    return False


def open_backend(url: str) -> StorageBackend:
    """The backend of `url` (checked by `check_storage_url`). Builds clients but makes
    no request: `S3Backend.check` asks the service."""
    check_storage_url(url)
    if url.startswith("file://"):
        return local.LocalDisk(local_path(url))
    from .s3 import S3Backend

    return S3Backend(parse_s3_url(url))


def open_storage(url: str, caps: Mapping[str, int]) -> AssetStorage:
    """The storage of `url`, as `open_backend` makes it."""
    check_storage_url(url)
    if url.startswith("file://"):
        return local.AssetStorage(local_path(url), caps)
    return AssetStorage(open_backend(url), caps)
