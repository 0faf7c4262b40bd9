"""What every view needs: the running node, the authenticator, settings; and the
small helpers that resolve a request's principal, company and job."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from quart import current_app, request

from ..config import Settings
from ..jobs import Job
from ..running_board import RunningBoard
from .auth import Authenticator, Principal
from .backlog import Backlog
from .errors import not_found
from .metrics import Metrics
from .readiness import StorageCheck
from .sse import EventEncoder

_KNOWN_COMPANIES_MAX = 100_000


@dataclass(slots=True)
class WebContext:
    rt: RunningBoard
    auth: Authenticator
    settings: Settings
    metrics: Metrics
    backlog: Backlog
    storage_check: StorageCheck
    encode: EventEncoder = field(default_factory=EventEncoder)
    #: Companies seen to exist. A company is never deleted, so a hit needs no store
    #: read (an operator's submit would otherwise cost one more round trip).
    known_companies: set[str] = field(default_factory=set)

    def saw_company(self, company_id: str) -> None:
        if len(self.known_companies) >= _KNOWN_COMPANIES_MAX:
            self.known_companies.clear()  # bounded; the next requests read them again
        self.known_companies.add(company_id)

    async def company_for(self, who: Principal, company_id: str) -> str:
        """The company id if `who` may act on it; 404 otherwise (also for another
        company's id, so ids cannot be probed)."""
        if not is_uuid(company_id):
            raise not_found(f"company {company_id!r} not found")
        who.require_company(company_id)
        if who.is_operator and company_id not in self.known_companies:
            if await self.rt.get_company(company_id) is None:
                raise not_found(f"company {company_id!r} not found")
            self.saw_company(company_id)
        return company_id


def ctx() -> WebContext:
    return current_app.extensions["callboard"]


def token_in(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer` header's value."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def bearer_token(*, allow_query: bool = False) -> str | None:
    token = token_in(request.headers.get("Authorization", ""))
    if token is not None:
        return token
    if allow_query:
        # EventSource cannot set headers; the access log never shows query strings.
        return request.args.get("token") or None
    return None


async def principal(*, allow_query: bool = False) -> Principal:
    return await ctx().auth.authenticate(bearer_token(allow_query=allow_query))


async def operator() -> Principal:
    who = await principal()
    who.require_operator()
    return who


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def company_for(who: Principal, company_id: str) -> str:
    return await ctx().company_for(who, company_id)


async def job_for(who: Principal, job_id: str, company_id: str | None = None) -> Job:
    """The job if `who` may see it (and it belongs to `company_id` when given)."""
    message = f"job {job_id!r} not found"
    if not is_uuid(job_id):
        raise not_found(message)
    job = await ctx().rt.store.get_job(job_id)
    if job is None or (company_id is not None and job.company_id != company_id):
        raise not_found(message)
    if not who.is_operator and job.company_id != who.company_id:
        raise not_found(message)
    return job
