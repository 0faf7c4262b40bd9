"""Bearer tokens: minted here, stored hashed, looked up by a non-secret prefix.

A token reads `cb_<prefix>_<secret>`: the 12-character prefix finds the row, the
SHA-256 of the whole token is compared in constant time with the stored hash. The
tokens are 190 bits of randomness, so a plain SHA-256 is enough (no password KDF).
Company tokens act on their company only; operator tokens (no company) on all.

Lookups are cached for a few seconds so a stream of requests does not hit the store
each time; a revoke on this node drops the cache entry at once, on another node the
revoke takes effect within `CACHE_SECONDS`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import trio

from ..jobs import new_id
from ..store.base import ApiToken, JobStore
from .errors import forbidden, not_found, unauthorized

log = logging.getLogger("callboard.auth")

CACHE_SECONDS = 10.0
_PREFIX_LEN = 12


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: str
    company_id: str | None  # None: the operator

    @property
    def is_operator(self) -> bool:
        return self.company_id is None

    def require_operator(self) -> None:
        if not self.is_operator:
            raise forbidden()

    def require_company(self, company_id: str) -> None:
        """Another company's resources answer 404, as if they did not exist."""
        if not self.is_operator and self.company_id != company_id:
            raise not_found(f"company {company_id!r} not found")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def mint_token() -> tuple[str, str]:
    """A new token and its lookup prefix."""
    prefix = secrets.token_hex(_PREFIX_LEN // 2)
    return f"cb_{prefix}_{secrets.token_urlsafe(24)}", prefix


def token_prefix(token: str) -> str | None:
    parts = token.split("_")
    if len(parts) < 3 or parts[0] != "cb" or len(parts[1]) != _PREFIX_LEN:
        return None
    return parts[1]


async def create_token(
    store: JobStore, company_id: str | None, label: str, now: datetime
) -> tuple[str, ApiToken]:
    token, prefix = mint_token()
    record = ApiToken(new_id(), company_id, label, prefix, hash_token(token), now)
    return token, await store.create_token(record)


class Authenticator:
    def __init__(self, store: JobStore) -> None:
        self._store = store
        self._cache: dict[str, tuple[float, list[ApiToken]]] = {}

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise unauthorized()
        prefix = token_prefix(token)
        if prefix is None:
            raise unauthorized("the bearer token is malformed")
        digest = hash_token(token)
        for record in await self._lookup(prefix):
            if hmac.compare_digest(record.hash, digest):
                if record.revoked_at is not None:
                    raise unauthorized("the bearer token was revoked")
                return Principal(record.id, record.company_id)
        raise unauthorized("the bearer token is not valid")

    async def _lookup(self, prefix: str) -> list[ApiToken]:
        now = trio.current_time()
        cached = self._cache.get(prefix)
        if cached is not None and cached[0] > now:
            return cached[1]
        records = await self._store.find_tokens(prefix)
        if len(self._cache) > 10_000:
            self._cache.clear()  # bounded: a flood of bad prefixes cannot grow it forever
        self._cache[prefix] = (now + CACHE_SECONDS, records)
        return records

    def forget(self, prefix: str) -> None:
        self._cache.pop(prefix, None)


async def ensure_operator_token(store: JobStore, token_file: Path, now: datetime) -> bool:
    """Create an operator token and write it to `token_file` (mode 0600) unless the file
    already holds one the store accepts. Returns True when a new token was made."""
    existing = await trio.to_thread.run_sync(_read_token, token_file)
    prefix = token_prefix(existing) if existing else None
    if prefix is not None:
        for record in await store.find_tokens(prefix):
            if (
                record.company_id is None
                and record.revoked_at is None
                and hmac.compare_digest(record.hash, hash_token(existing))
            ):
                return False
    token, _ = await create_token(store, None, "operator", now)
    await trio.to_thread.run_sync(_write_secret, token_file, token)
    log.info("created an operator token in %s (mode 0600)", token_file)
    return True


def _read_token(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def _write_secret(path: Path, secret: str) -> None:
    """Write through a temporary file created 0600, then rename: never a moment where
    the file is half-written or readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
