"""A real PostgreSQL for tests: one migrated template database per test session, and
a fresh database cloned from it per test (dropped after).

The server is CALLBOARD_TEST_PG_URL (default: the local one on 127.0.0.1:5432 as
`postgres`). Tests skip when it is unreachable, unless CALLBOARD_REQUIRE_PG is set
(CI sets it): then they fail.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

ADMIN_URL = os.environ.get("CALLBOARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def url_for(database: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


async def _admin(*statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def admin(*statements: str) -> None:
    """Run statements on the server's maintenance database (plain asyncio, sync)."""
    asyncio.run(_admin(*statements))


def reachable() -> str | None:
    """None when the server answers, else why not."""
    try:
        admin("SELECT 1")
    except Exception as exc:  # any failure means: no PostgreSQL here
        return f"{type(exc).__name__}: {exc}"
    return None


def require() -> None:
    why = reachable()
    if why is None:
        return
    message = f"PostgreSQL at {ADMIN_URL} is not reachable ({why})"
    if os.environ.get("CALLBOARD_REQUIRE_PG"):
        pytest.fail(f"{message}, and CALLBOARD_REQUIRE_PG is set")
    pytest.skip(message)


async def _migrate(url: str) -> None:
    import asyncpg

    from callboard.store.migrations import discover
    from callboard.store.postgres.store import _apply_migrations

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await _apply_migrations(conn, discover("postgres"), migrate=True)
    finally:
        await conn.close()


def create_template() -> str:
    name = f"callboard_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin(f'CREATE DATABASE "{name}"')
    asyncio.run(_migrate(url_for(name)))
    return name


def create_database(template: str | None = None) -> str:
    name = f"callboard_test_{uuid.uuid4().hex[:12]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    admin(f'CREATE DATABASE "{name}"{clause}')
    return name


def drop_database(name: str) -> None:
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
