"""Typed errors of the public API.

Each carries the data a caller needs (ids, names, states), so the web layer can
turn them into JSON in one place and a script can branch on the type.
"""

from __future__ import annotations

from collections.abc import Iterable

from .sizes import human_bytes


class CallboardError(Exception):
    """Base of every error callboard raises on purpose."""


class InvalidRequest(CallboardError):
    """The request itself is malformed: wrong types, input not an object, bad values."""


class UnknownJobType(CallboardError):
    """`where` names the job in a batch (e.g. "jobs[3]: "); `hint` says how to get the
    type when the node could have it (the demo types, switched off)."""

    def __init__(
        self, job_type: str, known: Iterable[str], where: str = "", hint: str = ""
    ) -> None:
        self.job_type = job_type
        self.known = sorted(known)
        self.where = where
        self.hint = hint
        super().__init__(
            f"{where}unknown job type {job_type!r}; "
            f"known job types: {', '.join(self.known) or '(none)'}" + (f"; {hint}" if hint else "")
        )


class ReservedJobType(CallboardError, ValueError):
    """A handler registered under the name of a built-in job type (`noop`, `demo.*`)."""

    def __init__(self, job_type: str) -> None:
        self.job_type = job_type
        super().__init__(
            f"{job_type!r} is a built-in job type; register the handler under another name"
        )


class NotFound(CallboardError):
    """Base for unknown ids (and, over HTTP, another company's ids)."""


class CompanyNotFound(NotFound):
    def __init__(self, company_id: str) -> None:
        self.company_id = company_id
        super().__init__(f"company {company_id!r} not found")


class JobNotFound(NotFound):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id!r} not found")


class TokenNotFound(NotFound):
    def __init__(self, token_id: str) -> None:
        self.token_id = token_id
        super().__init__(f"token {token_id!r} not found")


class AssetNotFound(NotFound):
    def __init__(self, asset_id: str) -> None:
        self.asset_id = asset_id
        super().__init__(f"asset {asset_id!r} not found")


class ScheduleNotFound(NotFound):
    def __init__(self, schedule_id: str) -> None:
        self.schedule_id = schedule_id
        super().__init__(f"schedule {schedule_id!r} not found")


class InvalidSchedule(InvalidRequest):
    """A cron expression or a timezone that is well formed but means nothing (HTTP 422,
    as an unknown job type)."""


class AssetTooLarge(CallboardError):
    """An asset went over its namespace's size cap while it was being written (HTTP 413).
    Nothing of it was kept."""

    def __init__(self, namespace: str, limit: int) -> None:
        self.namespace = namespace
        self.limit = limit
        super().__init__(
            f"asset exceeds the {human_bytes(limit)} ({limit} bytes) limit "
            f"for namespace {namespace!r}"
        )


class StorageFull(CallboardError):
    """Asset storage ran out of space (or quota) while an asset was being written (HTTP
    507). Nothing of the asset was kept."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        super().__init__(f"asset storage is out of space: the {namespace!r} asset was not kept")


class StorageUnavailable(CallboardError):
    """Asset storage (the object store) could not be reached or failed (HTTP 503); the
    client's error is the __cause__. The message names the storage, never a credential."""


class Conflict(CallboardError):
    """The operation does not fit the current state (HTTP 409)."""


class CompanyExists(Conflict):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a company named {name!r} already exists")


class ScheduleExists(Conflict):
    def __init__(self, company_id: str, name: str) -> None:
        self.company_id = company_id
        self.name = name
        super().__init__(f"company {company_id!r} has a schedule named {name!r} already")


class InvalidTransition(Conflict):
    def __init__(self, job_id: str, status: str, action: str) -> None:
        self.job_id = job_id
        self.status = status
        self.action = action
        super().__init__(f"cannot {action} job {job_id} while it is {status}")


class StoreUnavailable(CallboardError):
    """The store could not be reached or failed; the driver's error is the __cause__."""


class StoreInUse(CallboardError):
    """Another process already runs on this embedded store."""


class ShuttingDown(CallboardError):
    """The runtime is stopping and accepts no new work."""


# --- the event broker (trio's words: Closed is yours, Broken the other side's) ---


class Lagged(CallboardError):
    """The subscriber fell behind and was dropped; re-subscribe from the last id seen."""

    def __init__(self, dropped_at: int, buffer: int) -> None:
        self.dropped_at = dropped_at
        self.buffer = buffer
        super().__init__(
            f"subscriber fell behind (buffer of {buffer} full) and was dropped; "
            "re-subscribe from the last event id seen"
        )


class BrokerClosed(CallboardError):
    """The broker stopped (the runtime is shutting down)."""
