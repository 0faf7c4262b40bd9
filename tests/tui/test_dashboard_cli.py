"""`callboard dashboard` on the command line: the errors it reports before the TUI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBOARD_")}
    return subprocess.run(
        [sys.executable, "-m", "callboard", "dashboard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_no_token_is_a_usage_error(tmp_path: Path) -> None:
    done = run(cwd=tmp_path)
    assert done.returncode == 2
    assert "operator.token" in done.stderr
    assert "Traceback" not in done.stderr


def test_empty_token_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    done = run("--token-file", str(tmp_path / "token"), cwd=tmp_path)
    assert done.returncode == 2
    assert f"no token in {tmp_path / 'token'}" in done.stderr


def test_token_and_token_file_exclude_each_other(tmp_path: Path) -> None:
    done = run("--token", "x", "--token-file", "y", cwd=tmp_path)
    assert done.returncode == 2
    assert "not allowed with" in done.stderr
