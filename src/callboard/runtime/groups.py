"""Nurseries are implementation details: an error that is the only one raised through
them should reach the caller as itself, not wrapped in exception groups (a caller
catching `StoreUnavailable`, or a command line turning it into one line of text,
would otherwise never see it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def sole_exception(group: BaseExceptionGroup) -> BaseException | None:
    """The one leaf of a (nested) exception group, or None when there are several."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None


@contextmanager
def unwrap_sole() -> Iterator[None]:
    """Re-raise a group holding exactly one exception as that exception."""
    try:
        yield
    except BaseExceptionGroup as group:
        sole = sole_exception(group)
        if sole is None:
            raise
        raise sole from sole.__cause__
