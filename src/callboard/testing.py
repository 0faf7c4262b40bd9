"""Fakes for tests (ours and our users'): the in-memory `JobStore`.

`MemoryStore` (in `callboard.store.memory`) never touches threads or the machine's
clock, so a board on it runs under trio's virtual clock, and it passes the same
contract suite as the SQLite and PostgreSQL stores:

    board = callboard.Board(store=MemoryStore(), workers=2)
"""

from .store.memory import MemoryStore

__all__ = ["MemoryStore"]
