"""The PostgreSQL store, for several nodes on one queue: the store (`store.py`), the
asyncpg-on-trio driver (`driver.py`), the cross-node event feed (`feed.py`), its
statements and migrations in `sql/`."""

from .store import PostgresStore, SchemaOutdated

__all__ = ["PostgresStore", "SchemaOutdated"]
