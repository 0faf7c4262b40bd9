"""PostgreSQL-only store checks (the shared contract runs in test_store_contract.py):
the schema the migrations build is the one schema.sql describes, and a store that
cannot reach its server says so in one typed error."""

from __future__ import annotations

import asyncio

import pytest

import pgkit
from callboard.errors import StoreUnavailable
from callboard.store.migrations import read_schema
from callboard.store.postgres import PostgresStore

# Every object of the public schema, in a form that does not depend on the order of
# creation: columns, constraints, indexes, functions.
CATALOG = {
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, column_default,
               is_identity, identity_generation
        FROM information_schema.columns WHERE table_schema = 'public'
          AND table_name <> 'schema_version'
        ORDER BY table_name, column_name""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
          AND conrelid::regclass::text <> 'schema_version'
        ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'schema_version'
        ORDER BY 1, 2""",
    "functions": """
        SELECT proname, pg_get_functiondef(oid) FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace ORDER BY 1""",
    "rows": """
        SELECT 'event_log_state', last_id::text FROM event_log_state
        UNION ALL SELECT 'event_prune_state', pruned_through::text FROM event_prune_state""",
}


async def _catalog(url: str) -> dict[str, list[tuple]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return {name: [tuple(r) for r in await conn.fetch(sql)] for name, sql in CATALOG.items()}
    finally:
        await conn.close()


async def _run_script(url: str, script: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(script)
    finally:
        await conn.close()


def test_schema_sql_is_what_the_migrations_build(pg_url):
    """schema.sql, applied to an empty database, gives the same catalog as the
    migrations (pg_url is a database migrated from the session's template)."""
    fresh = pgkit.create_database()
    try:
        fresh_url = pgkit.url_for(fresh)
        asyncio.run(_run_script(fresh_url, read_schema("postgres")))
        assert asyncio.run(_catalog(fresh_url)) == asyncio.run(_catalog(pg_url))
    finally:
        pgkit.drop_database(fresh)


@pytest.mark.trio
async def test_an_unreachable_server_is_one_typed_error():
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    store = PostgresStore("postgresql://callboard:secret@127.0.0.1:1/callboard")
    with pytest.raises(StoreUnavailable) as caught:
        async with store.opened():
            pass
    message = str(caught.value)
    assert "cannot connect to postgresql://callboard@127.0.0.1:1/callboard" in message
    assert "secret" not in message
