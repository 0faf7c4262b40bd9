from __future__ import annotations

import pytest

import s3kit
from store import pgkit

# Every JobStore implementation the contract suite runs against. A new store adds
# one name here and one branch in `_make_store`.
STORE_KINDS = ["memory", "sqlite", "postgres"]


@pytest.fixture(scope="session")
def pg_template():
    """A database with the current schema, cloned by `pg_url` for each test."""
    pgkit.require()
    name = pgkit.create_template()
    yield name
    pgkit.drop_database(name)


@pytest.fixture
def pg_url(pg_template):
    """The URL of a fresh, migrated database of its own, dropped after the test."""
    name = pgkit.create_database(pg_template)
    yield pgkit.url_for(name)
    pgkit.drop_database(name)


@pytest.fixture
def pg_empty_url():
    """The URL of an empty database (no schema), dropped after the test."""
    pgkit.require()
    name = pgkit.create_database()
    yield pgkit.url_for(name)
    pgkit.drop_database(name)


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server, started once per session (tests/s3kit.py)."""
    with s3kit.moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_url(s3_endpoint, monkeypatch):
    """`s3://<fresh bucket>/assets`, with the standard AWS settings pointing at the
    test server in this process's environment (so in the nodes it starts, too)."""
    for name, value in s3kit.environment(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    bucket = s3kit.new_bucket(s3_endpoint)
    yield f"s3://{bucket}/assets"
    s3kit.drop_bucket(s3_endpoint, bucket)


@pytest.fixture(params=STORE_KINDS)
def make_store(request, tmp_path):
    """A function making an unopened store of each kind (PostgreSQL: on a fresh
    database of its own)."""
    kind = request.param
    if kind == "memory":
        from callboard.store.memory import MemoryStore

        return MemoryStore
    if kind == "sqlite":
        from callboard.store.sqlite import SqliteStore

        return lambda: SqliteStore(tmp_path / "callboard.db")
    if kind == "postgres":
        from callboard.store.postgres import PostgresStore

        url = request.getfixturevalue("pg_url")
        return lambda: PostgresStore(url)
    raise AssertionError(f"unknown store kind {kind!r}")


@pytest.fixture
async def store(make_store):
    """An opened store of each kind; closed after the test."""
    async with make_store().opened() as s:
        yield s
