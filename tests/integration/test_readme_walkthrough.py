"""The README's walkthrough, run as written against a real `callboard serve`."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from serve_process import serve

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"


def walkthrough() -> str:
    section = README.read_text().split("## Walkthrough", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, flags=re.S).group(1)


def test_the_walkthrough_works_as_written(tmp_path):
    script = walkthrough()
    with serve(tmp_path) as server:
        # Only the address differs: the test server listens on a free port (the CLI
        # finds it through CALLBOARD_URL).
        script = script.replace("http://127.0.0.1:8000", server.url)
        (tmp_path / ".venv").symlink_to(VENV_BIN.parent)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "CALLBOARD_URL": server.url},
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("  acme")
    events = [line.split(": ", 1)[1] for line in lines if line.startswith("event: ")]
    # The stream starts with the job's latest event, whatever it is by then.
    assert events[0] in {"content_job.queued", "content_job.running", "content_job.progress"}
    assert events[-1] == "content_job.done"
    assert events.count("content_job.progress") >= 5
    assert lines[1].startswith("retry: ")
