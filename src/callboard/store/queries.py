"""SQL as named blocks in `.sql` files under `store/<dialect>/sql/`, loaded once.

A block starts at a line `-- name: <name>` and runs to the next such line; it holds
one statement and may start with comment lines that document it. Text before the
first block is the file's header. Callers look blocks up by name, so no SQL text is
ever assembled in Python.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from importlib import resources
from importlib.abc import Traversable
from types import MappingProxyType

_BLOCK = re.compile(r"^-- name: ([a-z][a-z0-9_]*)[ \t]*$", re.MULTILINE)


def sql_dir(dialect: str) -> Traversable:
    return resources.files(f"callboard.store.{dialect}").joinpath("sql")


def parse_queries(text: str, source: str = "<string>") -> dict[str, str]:
    """The named blocks of one file; a repeated or empty block is an error."""
    parts = _BLOCK.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sql = body.strip()
        if name in queries:
            raise ValueError(f"{source}: query {name!r} is defined twice")
        if not sql or all(line.lstrip().startswith("--") for line in sql.splitlines()):
            raise ValueError(f"{source}: query {name!r} is empty")
        queries[name] = sql
    return queries


@functools.cache
def load_queries(dialect: str, filename: str = "queries.sql") -> Mapping[str, str]:
    path = sql_dir(dialect).joinpath(filename)
    return MappingProxyType(
        parse_queries(path.read_text(encoding="utf-8"), f"{dialect}/{filename}")
    )
