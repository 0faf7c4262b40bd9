"""The embedded SQLite store: one process, one file (`store.py`), one writer thread
(`writer.py`), its statements and migrations in `sql/`."""

from .store import SqliteStore

__all__ = ["SqliteStore"]
