"""Versioned, forward-only schema migrations.

Migrations are files `NNNN_description.sql` in `store/sql/<dialect>/`, numbered from
0001 without gaps. Each is applied once, in order, in its own transaction, and
recorded in the `schema_version` table. `schema.sql` beside them is the schema they
add up to: the source of truth a reader consults, checked by a test that replays
every migration on an empty database and compares the result with `schema.sql`
(`sqlite_schema()`; whitespace and comments do not count). A migration that alters
a table must leave the table's stored CREATE text equal to schema.sql's, so write
schema.sql's CREATE as SQLite rewrites it (or rebuild the table in the migration).

Nothing here reads the database's lock: SQLite runs migrations inside the store's
exclusive file lock and `BEGIN IMMEDIATE`, and re-checks the version in that
transaction.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from dataclasses import dataclass

from ..errors import StoreUnavailable
from .queries import load_queries, sql_dir

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@functools.cache
def discover(dialect: str) -> tuple[Migration, ...]:
    """Every migration of a dialect, in order; raises if the numbering has a gap."""
    found = []
    for entry in sql_dir(dialect).iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{dialect} migrations must be numbered 1..N without gaps: {versions}")
    return tuple(found)


def read_schema(dialect: str) -> str:
    return sql_dir(dialect).joinpath("schema.sql").read_text(encoding="utf-8")


def split_sqlite_script(script: str) -> list[str]:
    """Split a script into statements (a trigger's BEGIN ... END stays whole).

    `executescript()` would do this, but it commits any open transaction first, which
    would break one transaction per migration.
    """
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    rest = _strip_comments(buffer).strip()
    if rest:
        raise ValueError(f"incomplete SQL statement at the end of the script: {rest[:80]!r}")
    return [s for s in statements if _strip_comments(s).strip(" \n\t;")]


def apply_sqlite(conn: sqlite3.Connection) -> list[int]:
    """Apply pending migrations on an autocommit connection; the versions applied."""
    queries = load_queries("sqlite")
    known = discover("sqlite")
    conn.execute(queries["create_schema_version"])
    applied = {row[0] for row in conn.execute(queries["applied_versions"])}
    if applied and max(applied) > len(known):
        raise StoreUnavailable(
            f"the database is at schema version {max(applied)}, newer than this "
            f"callboard knows (up to {len(known)}): upgrade callboard"
        )
    done = []
    for migration in known:
        if migration.version in applied:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it while we waited for the write lock.
            now_applied = {row[0] for row in conn.execute(queries["applied_versions"])}
            if migration.version in now_applied:
                conn.execute("ROLLBACK")
                continue
            for statement in split_sqlite_script(migration.sql):
                conn.execute(statement)
            conn.execute(
                queries["record_migration"],
                {"version": migration.version, "name": migration.name},
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        done.append(migration.version)
    if done:
        # A migration may rewrite a table's stored text (0009 does, under
        # writable_schema), which this connection would not read again by itself.
        conn.execute("PRAGMA writable_schema = RESET")
    return done


def sqlite_schema(conn: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
    """The schema objects of a database, their SQL without comments or extra spaces."""
    rows = conn.execute(load_queries("sqlite")["schema_objects"]).fetchall()
    return [(type_, name, table, _normalise(sql or "")) for type_, name, table, sql in rows]


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _normalise(sql: str) -> str:
    text = re.sub(r"\s+", " ", _strip_comments(sql)).strip()
    return re.sub(r"\s*([(),])\s*", r"\1", text)
