"""Where jobs, events, companies, tokens and asset rows are kept.

`base.JobStore` is the one interface; `memory`, `sqlite` and `postgres` implement it
and pass one contract suite (tests/store/). `rows` maps stored rows to records for the
two SQL stores; each SQL store keeps its statements in its own `sql/` folder.
`open_store` picks the implementation from a database URL and imports only that one
(the PostgreSQL driver is heavy and patches asyncio's loop lookup).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import SettingError, sqlite_path

if TYPE_CHECKING:
    from .base import JobStore

__all__ = ["open_store"]


def open_store(database_url: str, *, pool_size: int = 10, migrate: bool = True) -> JobStore:
    """The JobStore for a database URL (SQLAlchemy spelling). `pool_size` and
    `migrate` concern PostgreSQL; the SQLite store always migrates (it is one
    process's own file)."""
    if database_url.startswith("sqlite:///"):
        from .sqlite import SqliteStore

        path = sqlite_path(database_url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteStore(path)
    if database_url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(database_url, pool_size=pool_size, migrate=migrate)
    raise SettingError(f"CALLBOARD_DATABASE_URL: unsupported database URL {database_url!r}")
