"""The JobStore interface: domain operations over a database, no SQL text in callers.

Every implementation (the in-memory fake in `callboard.testing`, SQLite, PostgreSQL)
passes the one contract suite in `tests/store/store_contract.py`.

Rules every implementation keeps:

- Times are passed in (`now`), never read from the machine's clock inside the store,
  so the runtime and the tests decide what time it is (virtual time in unit tests).
  All datetimes are timezone-aware UTC.
- Every state change writes the job row and one event row in one transaction, and
  returns the committed `JobEvent`s (the caller publishes them after commit).
- Event ids increase monotonically in commit order.
- A method that writes either commits fully or raises; it never leaves half a change.
  Writes are not interrupted by trio cancellation once they started: the
  implementation shields the wait for its commit, so a caller that gets a result back
  can always publish what it got.
- Driver errors are wrapped in `StoreUnavailable` (with the driver error as __cause__);
  domain errors (`JobNotFound`, `InvalidTransition`, `CompanyExists`,
  `CompanyNotFound`) are raised as such.
- Asset rows describe files already in place: callers write the file first, so a row
  never points at a missing file. A job's assets and its result are written by
  `complete`, in the transaction of its `done` transition.
- Node presence (`announce_node`, `live_nodes`, `forget_node`) is advisory: the
  runtime's presence actor (`actors/presence.py`) keeps one row per running node,
  which is how nodes learn of each other.
- Lease-guarded methods (`renew_leases`, `record_progress`, `complete`, `fail`,
  `mark_cancelled`) act only when the job is `running` and `lease_owner` matches; when
  it does not (the reaper took the job, or it was retried elsewhere) they change
  nothing and return None / leave the id out, so a lost worker can never overwrite
  another attempt.
- Schedules: a job made by a schedule carries (`schedule_id`, `scheduled_for`), and
  no two jobs carry the same pair (a unique key), so a tick makes one job however
  many nodes race for it. `fire_schedule` writes that job and advances the schedule
  in one transaction, and only while the schedule is at the revision it was read at.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Self

import trio

from ..jobs import (
    Asset,
    Company,
    Inserted,
    Job,
    JobEvent,
    JobStatus,
    NewJob,
    Page,
    Schedule,
    iso,
)

log = logging.getLogger("callboard.store")


class Reachability:
    """Says once that a store became unreachable and once that it is back, each as one
    line: an outage fails every statement of every actor, and a line (or a traceback)
    for each would bury what happened. The callers log their own retries at DEBUG. The
    stores call `reached()` after a write only, so a store that reads but cannot write
    stays reported as down."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._down_since: float | None = None

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def lost(self, reason: object) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "%s is unreachable (%s): submits answer 503 and work waits until it is back",
                self.what,
                reason,
            )
        else:
            log.debug("%s still unreachable: %s", self.what, reason)

    def reached(self) -> None:
        if self._down_since is not None:
            log.warning(
                "%s is reachable again after %.1f s", self.what, time.monotonic() - self._down_since
            )
            self._down_since = None


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A bearer token as stored: never the secret, only its SHA-256 (`hash`) and the
    non-secret `prefix` it is looked up by. `company_id` None is an operator token."""

    id: str
    company_id: str | None
    label: str
    prefix: str
    hash: str
    created_at: datetime
    revoked_at: datetime | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "companyId": self.company_id,
            "label": self.label,
            "createdAt": iso(self.created_at),
            "revokedAt": iso(self.revoked_at),
        }


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node sharing the store, as it announces itself (`JobStore.announce_node`).

    `id` is its lease owner id (host:pid:random, new at every start); `storage_url`
    where it keeps assets (a file:// or s3:// URL: neither ever carries a credential);
    `job_types` what its workers run (none on a node without workers). `last_seen` is
    the time of its latest announcement, as the store read it back."""

    id: str
    host: str
    pid: int
    started_at: datetime
    storage_url: str
    job_types: tuple[str, ...] = ()
    last_seen: datetime | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "startedAt": iso(self.started_at),
            "lastSeen": iso(self.last_seen),
            "storage": self.storage_url,
            "jobTypes": list(self.job_types),
        }


@dataclass(frozen=True, slots=True)
class Renewal:
    """What `renew_leases` found: the ids still held, and which of those a cancel was
    requested for (so a worker on any node learns of a cancel at its next renewal)."""

    held: frozenset[str]
    cancel_requested: frozenset[str]


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """`cancel` on a queued job ends it at once (`event` set, job cancelled); on a running
    job it only records the request (`event` None) and the owner of the lease ends it."""

    job: Job
    event: JobEvent | None


class JobStore(abc.ABC):
    """Persistence of companies, jobs and their events."""

    #: True when one process owns the store exclusively (embedded SQLite): on start-up
    #: every job still `running` belongs to a dead process and can be reclaimed at once.
    exclusive: bool = False

    #: Set by the runtime: called in the trio thread, synchronously, with committed
    #: events in id order, each once. The runtime publishes from here, so live
    #: subscribers see events in id order and never an event that was not committed.
    #: A store of one process calls it before the callers of each commit resume; a
    #: store shared by several nodes (PostgreSQL) also hands over the other nodes'
    #: events, and holds back a commit whose ids follow ones it has not seen yet until
    #: it has read those (so that one may be published after its callers resume).
    on_commit: Callable[[list[JobEvent]], None] | None = None

    #: Set by the runtime, called (in the trio thread) by a store shared by several
    #: nodes when another node made jobs runnable (wake the dispatcher) ...
    on_jobs_queued: Callable[[], None] | None = None
    #: ... or asked to cancel a running job (stop it if it runs here; the lease holder
    #: would otherwise learn of it at its next renewal).
    on_cancel_requested: Callable[[str], None] | None = None
    #: Set by the runtime: whether anything on this node consumes the events other
    #: nodes commit (a subscriber, an observer, a dispatcher to wake). A store shared
    #: by several nodes need not read those back while it returns False; None: always.
    events_wanted: Callable[[], bool] | None = None

    # --- lifecycle ---------------------------------------------------------------------

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[Self]:
        """The store, open for the duration of the block, closed (shielded) after it.

        The way to open a store: one with background tasks (PostgreSQL: its event
        loop, listener, completion writer) runs them inside this block."""
        try:
            await self.open()
            yield self
        finally:
            with trio.CancelScope(shield=True):
                await self.aclose()

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, apply pending migrations, be ready for use. Raises StoreInUse for an
        exclusive store another live process holds."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections and threads. Idempotent; safe after a failed open()."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers a trivial query."""

    # --- companies ---------------------------------------------------------------------

    @abc.abstractmethod
    async def create_company(self, name: str, now: datetime) -> Company:
        """Raises CompanyExists if the name is taken (names are unique, case-sensitive)."""

    @abc.abstractmethod
    async def get_company(self, company_id: str) -> Company | None: ...

    @abc.abstractmethod
    async def get_company_by_name(self, name: str) -> Company | None: ...

    @abc.abstractmethod
    async def list_companies(self) -> list[Company]:
        """Oldest first."""

    # --- fair share --------------------------------------------------------------------

    @abc.abstractmethod
    async def set_company_max_running(self, company_id: str, max_running: int | None) -> Company:
        """Cap the company's running jobs (None: no cap) and return it. The cap bounds
        what claims start from now on; jobs already running are left to finish.
        Raises CompanyNotFound, or InvalidRequest for a cap below 1."""

    @abc.abstractmethod
    async def count_by_company(self) -> dict[str, tuple[int, int]]:
        """Running and queued jobs of each company that has any, by company id."""

    # --- submitting --------------------------------------------------------------------

    @abc.abstractmethod
    async def insert_jobs(self, jobs: Sequence[NewJob], now: datetime) -> list[Inserted]:
        """Insert all jobs with status queued, attempt 0, progress 0, each with a
        `content_job.queued` event, in ONE transaction (all or nothing).

        Raises CompanyNotFound (writing nothing) if a job's company does not exist.
        A job whose (company_id, idempotency_key) already exists, in the store or earlier
        in the same batch, is not inserted: the existing job comes back with
        created=False and event None. Results are in input order.
        """

    async def insert_running(
        self,
        job: NewJob,
        now: datetime,
        *,
        lease_owner: str,
        lease_expires_at: datetime,
    ) -> tuple[Inserted, Job] | None:
        """Insert one job already claimed by `lease_owner` (attempt 1, started at
        `now`), with its `content_job.queued` and `content_job.running` events, in one
        transaction: a submit that finds an idle worker on its node starts the job
        without a separate claim (one round trip instead of two).

        Only when the job is runnable at `now`, no queued runnable job of its type
        has the same or a higher priority (starting it would overtake that one, of
        any company: with nothing waiting there is no fair order to keep), and its
        company has no `max_running` (a capped company's jobs go through `claim`,
        which counts its running jobs under a lock).
        Otherwise, and when its idempotency key exists already, nothing is written and
        None comes back: the caller inserts it with `insert_jobs`. Returns the job as
        queued with its queued event (what a submit answers) and the running job with
        its lease (what a worker runs). Raises as `insert_jobs` does.

        A store that cannot do this in one step keeps this default: never.
        """
        await trio.lowlevel.checkpoint()
        return None

    # --- reading -----------------------------------------------------------------------

    @abc.abstractmethod
    async def get_job(self, job_id: str) -> Job | None: ...

    @abc.abstractmethod
    async def list_jobs(
        self,
        company_id: str | None,
        *,
        status: JobStatus | Collection[JobStatus] | None = None,
        job_type: str | None = None,
        source_task_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Job]:
        """Newest first (created_at desc, id desc), keyset-paginated: `next_cursor` is an
        opaque string for the next page, None on the last. `company_id` None lists all
        companies. `status` one status or several (any of them; an empty collection
        matches nothing); `created_after` <= created_at < `created_before`. A page
        costs about the same however many jobs of other statuses the table holds (each
        status is read from its own index, and several are merged). Raises
        InvalidRequest for a cursor it did not issue."""

    @abc.abstractmethod
    async def count_by_status(
        self,
        company_id: str | None = None,
        *,
        job_type: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> dict[JobStatus, int]:
        """Every status is a key, zero included; only jobs of this type and created in
        [created_after, created_before) when given (what a bulk action's dry run
        reports)."""

    @abc.abstractmethod
    async def count_by_type_and_status(self) -> dict[tuple[str, JobStatus], int]:
        """Jobs of every company by (job_type, status); only non-zero pairs."""

    @abc.abstractmethod
    async def count_queued(self, now: datetime, at_most: int) -> int:
        """Queued jobs due by `now` (of every company), counted up to `at_most`: a read
        whose cost is bounded however long the queue is (the front door's backlog
        check makes it often)."""

    @abc.abstractmethod
    async def next_run_at(self, job_types: Collection[str]) -> datetime | None:
        """The earliest run_at among queued jobs of these types, or None."""

    # --- the worker's side -------------------------------------------------------------

    @abc.abstractmethod
    async def claim(
        self,
        *,
        now: datetime,
        limit: int,
        type_caps: Mapping[str, int | None],
        lease_owner: str,
        lease_expires_at: datetime,
    ) -> list[tuple[Job, JobEvent]]:
        """Atomically take up to `limit` runnable jobs and mark them running.

        Runnable: status queued and run_at <= now, job_type a key of `type_caps`, and
        at most `type_caps[t]` jobs of type t taken in this call when that is not None
        (the caller passes what it may still start; 0 takes none).

        Order, fair between companies: priority desc first; then, among jobs of equal
        priority, the company with the fewest jobs running (in the whole store, every
        node's) first, so one company's backlog never queues another's behind it;
        within a company, run_at, then created_at, then insertion order. A batch
        interleaves companies: each company's runnable jobs are ranked in that order
        from 0, and a job's fair key is its company's running count plus its rank
        (ties: run_at, created_at, insertion order). A company with `max_running`
        never gets a job whose running count plus rank reaches it, counted under a
        lock, so claims of several nodes at once never exceed the cap. The type caps
        then take each type's first jobs in the fair order. Each taken job gets attempt + 1,
        started_at = now, finished_at None, the lease, progress reset to 0 with no
        message, and a `content_job.running` event. Two concurrent claims never take
        the same job (SKIP LOCKED on PostgreSQL).
        """

    @abc.abstractmethod
    async def renew_leases(
        self, job_ids: Collection[str], lease_owner: str, lease_expires_at: datetime
    ) -> Renewal:
        """Extend the leases this owner still holds; ids it no longer holds are left out."""

    @abc.abstractmethod
    async def record_progress(
        self,
        job_id: str,
        lease_owner: str,
        percent: int,
        message: str | None,
        now: datetime,
    ) -> JobEvent | None:
        """Store progress and a `content_job.progress` event; None if the lease is lost."""

    @abc.abstractmethod
    async def complete(
        self,
        job_id: str,
        lease_owner: str,
        now: datetime,
        result_asset_id: str | None = None,
        assets: Sequence[Asset] = (),
        result: str | None = None,
    ) -> JobEvent | None:
        """running -> done: progress percent 100 (message kept), finished_at, lease
        cleared, error_message, error_type and error_traceback cleared, result_asset_id
        set when given, and `result` (what the handler returned, as the compact JSON
        text `jobs.encode_result` wrote; None for none) stored as given, so the job's
        `result` is this attempt's.
        Event `content_job.done`. None if the lease is lost.

        `assets` (the files the attempt wrote) are inserted in the SAME transaction, so
        the job is done with its assets or, if anything fails, neither. Each must have
        the job's company and `created_by_job_id` = job_id, else InvalidRequest and
        nothing is written; a duplicate id or object key is InvalidRequest too. When
        the lease is lost none is inserted."""

    @abc.abstractmethod
    async def fail(
        self,
        job_id: str,
        lease_owner: str,
        now: datetime,
        error_message: str,
        retry_at: datetime | None = None,
        *,
        error_type: str | None = None,
        error_traceback: str | None = None,
    ) -> JobEvent | None:
        """End a failed attempt. With `retry_at`: running -> queued, run_at = retry_at,
        error_message, error_type and error_traceback kept (made storable as
        `storable_text` does, so the outcome is recorded whatever they hold), lease
        cleared, event `content_job.retrying`. Without: running -> failed, finished_at
        set, event `content_job.failed`. Either way, a job asked to stop
        (cancel_requested) ends as `mark_cancelled` does instead. The event's job
        carries the three, so every attempt's failure stays in the history.
        None if the lease is lost."""

    @abc.abstractmethod
    async def mark_cancelled(self, job_id: str, lease_owner: str, now: datetime) -> JobEvent | None:
        """running -> cancelled (the handler was stopped): finished_at set, lease
        cleared, error_message "cancelled" (error_type and error_traceback None), event
        `content_job.cancelled`.
        None if the lease is lost."""

    # --- operator actions --------------------------------------------------------------

    @abc.abstractmethod
    async def cancel(self, job_id: str, now: datetime) -> CancelOutcome:
        """queued -> cancelled at once (event `content_job.cancelled`, error_message
        "cancelled", error_type and error_traceback None); running -> cancel_requested
        set, no event (idempotent).
        Raises JobNotFound, or InvalidTransition when the job is terminal."""

    @abc.abstractmethod
    async def retry(self, job_id: str, now: datetime) -> JobEvent:
        """failed | cancelled -> queued with run_at = now, cancel_requested cleared,
        finished_at cleared, error_message (and its type and traceback) kept until the
        next attempt ends, and max_attempts raised to attempt + 1 if it is lower (a
        manual retry always gets one more run). Event `content_job.queued`.
        Raises JobNotFound, or InvalidTransition from any other status."""

    @abc.abstractmethod
    async def reap_expired(
        self,
        *,
        now: datetime,
        expired_before: datetime,
        retry_at: datetime,
        exclude_owner: str | None = None,
        limit: int = 100,
    ) -> list[JobEvent]:
        """Reclaim running jobs whose lease_expires_at <= expired_before (their worker is
        gone), skipping `exclude_owner`'s leases when given:
        cancel_requested -> cancelled (event cancelled);
        attempt < max_attempts -> queued with run_at = retry_at, error_message
        "worker lost" and error_type WORKER_LOST_TYPE, no traceback (event retrying);
        otherwise -> failed with the same error fields (event failed).
        At most `limit` jobs per call, oldest lease first."""

    # --- events ------------------------------------------------------------------------

    @abc.abstractmethod
    async def events_after(
        self,
        after_id: int,
        *,
        company_id: str | None = None,
        job_id: str | None = None,
        limit: int = 500,
    ) -> list[JobEvent]:
        """Events with id > after_id, ascending, optionally for one company or one job."""

    @abc.abstractmethod
    async def latest_event(self, job_id: str) -> JobEvent | None: ...

    @abc.abstractmethod
    async def last_event_id(self) -> int:
        """The highest event id stored, 0 when there are none."""

    @abc.abstractmethod
    async def pruned_through(self) -> int:
        """The highest event id ever pruned (0 if none): a replay after an id lower than
        this may have missed events (SSE `stream.gap`)."""

    @abc.abstractmethod
    async def prune_events(self, before: datetime, limit: int = 10_000) -> int:
        """Delete up to `limit` events created before `before`, oldest first, but never a
        job's latest event (a job's stream starts from it), and raise `pruned_through`
        to the highest id deleted. Returns how many went."""

    # --- retention ---------------------------------------------------------------------

    @abc.abstractmethod
    async def prune_jobs(self, finished_before: datetime, limit: int = 1000) -> int:
        """Delete up to `limit` finished jobs (done, failed, cancelled) whose finished_at
        is before `finished_before`, oldest first, with all their events, in one
        transaction, and raise `pruned_through` to the highest event id deleted (a feed
        replayed from before it may have missed them). Their assets stay, no longer
        linked to a job (`created_by_job_id` becomes None). Returns how many jobs went.
        Idempotent, so several nodes may prune at once."""

    @abc.abstractmethod
    async def count_prunable_jobs(self, finished_before: datetime) -> int:
        """How many jobs `prune_jobs` would delete with no limit (a dry run)."""

    # --- node presence -----------------------------------------------------------------

    @abc.abstractmethod
    async def announce_node(self, node: NodeInfo, now: datetime, forget_before: datetime) -> None:
        """Insert or replace the row of `node.id` with `last_seen` = now (its own
        `last_seen` is ignored). Rows last seen before `forget_before` (nodes that were
        killed, so never forgot themselves) are deleted in the same write."""

    @abc.abstractmethod
    async def live_nodes(self, since: datetime) -> list[NodeInfo]:
        """The nodes last seen at or after `since`, earliest started first (then by id)."""

    @abc.abstractmethod
    async def forget_node(self, node_id: str) -> None:
        """Delete a node's row (it stops); nothing happens if there is none."""

    # --- API tokens --------------------------------------------------------------------

    @abc.abstractmethod
    async def create_token(self, token: ApiToken) -> ApiToken:
        """Store a token record. Raises CompanyNotFound for an unknown company."""

    @abc.abstractmethod
    async def find_tokens(self, prefix: str) -> list[ApiToken]:
        """Every token (revoked ones included) with this prefix; normally one."""

    @abc.abstractmethod
    async def list_tokens(self, company_id: str | None) -> list[ApiToken]:
        """A company's tokens (None: the operator tokens), oldest first."""

    @abc.abstractmethod
    async def revoke_token(self, token_id: str, company_id: str | None, now: datetime) -> ApiToken:
        """Set revoked_at (kept if already set). Raises TokenNotFound unless the token
        exists and belongs to `company_id` (None: an operator token)."""

    # --- assets ------------------------------------------------------------------------

    @abc.abstractmethod
    async def insert_asset(self, asset: Asset) -> Asset:
        """Store the row of a file already in place (an upload).

        Raises CompanyNotFound for an unknown company, JobNotFound for an unknown
        `created_by_job_id`, InvalidRequest when the id or object key exists already
        (nothing is written in any of these cases)."""

    @abc.abstractmethod
    async def get_asset(self, asset_id: str) -> Asset | None: ...

    @abc.abstractmethod
    async def list_assets(
        self,
        company_id: str,
        *,
        source_task_id: str | None = None,
        created_by_job_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Asset]:
        """A company's assets, newest first (created_at desc, id desc), keyset-paginated
        as `list_jobs` is; optionally only those of one source task or one job.
        Raises InvalidRequest for a cursor it did not issue or a limit below 1."""

    @abc.abstractmethod
    async def list_all_assets(self, after: str | None, limit: int) -> list[Asset]:
        """Up to `limit` assets of every company with an id greater than `after` (None:
        from the first), ordered by id: the pages `storage copy` walks. An order by a
        unique, unchanging key keeps the walk stable while rows are added (each row
        comes once; one added behind the walk is for the next run) and lets a page
        start where the last ended without a count or an offset. Raises
        InvalidRequest for a limit below 1."""

    @abc.abstractmethod
    async def existing_asset_keys(self, object_keys: Collection[str]) -> set[str]:
        """Which of these object keys have an `assets` row (gc keeps their files)."""

    # --- schedules ---------------------------------------------------------------------

    @abc.abstractmethod
    async def create_schedule(self, schedule: Schedule) -> Schedule:
        """Store a new schedule (its revision as given). Raises CompanyNotFound for an
        unknown company, ScheduleExists when the company has one of that name."""

    @abc.abstractmethod
    async def get_schedule(self, schedule_id: str) -> Schedule | None: ...

    @abc.abstractmethod
    async def get_schedule_by_name(self, company_id: str, name: str) -> Schedule | None: ...

    @abc.abstractmethod
    async def list_schedules(
        self, company_id: str | None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Schedule]:
        """Newest first, keyset-paginated as `list_jobs` is (`company_id` None: every
        company's). Raises InvalidRequest for a cursor it did not issue."""

    @abc.abstractmethod
    async def update_schedule(self, schedule: Schedule) -> Schedule | None:
        """Replace every field but id, company and created_at of the stored schedule
        whose revision is `schedule.revision`, and raise its revision by one; None when
        the revision moved on (read it again). Raises ScheduleNotFound when it is gone,
        ScheduleExists when the new name is taken in its company."""

    @abc.abstractmethod
    async def delete_schedule(self, schedule_id: str) -> bool:
        """True when there was one. The jobs it made stay."""

    @abc.abstractmethod
    async def due_schedules(self, now: datetime, limit: int) -> list[Schedule]:
        """Up to `limit` schedules not paused whose next_run_at <= now, earliest first."""

    @abc.abstractmethod
    async def next_schedule_at(self) -> datetime | None:
        """The earliest next_run_at of the schedules not paused, or None."""

    @abc.abstractmethod
    async def fire_schedule(
        self,
        schedule: Schedule,
        job: NewJob | None,
        next_run_at: datetime,
        now: datetime,
    ) -> Inserted | None:
        """In one transaction, while the stored schedule is at `schedule.revision` and
        not paused: set its next_run_at, raise its revision, and insert `job` (queued,
        with its `content_job.queued` event; its schedule_id is the schedule's and its
        scheduled_for the tick) unless a job of that schedule and tick exists already.
        The schedule's last_run_at and last_job_id become the job's when it is made.
        `job` None advances the schedule without a job (a skipped tick).

        Returns the inserted job, or None when no job was made: the revision moved on
        (another node fired it, or it was edited, paused or deleted), the tick's job
        exists, or `job` was None."""
