"""The `callboard` command (entry point `callboard.cli:main`).

`main` parses the command line; `serve` holds `serve` and `migrate`, the only commands
that load the runtime; every other command (`jobs`, `events`, `assets`, `admin`,
`dashboard`) speaks HTTP through `callboard.client`, with `common` as their plumbing.
"""

from .main import main

__all__ = ["main"]
