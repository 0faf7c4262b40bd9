"""The README's handler example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def run(example: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", example], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_the_handler_example_runs_and_runs_again(tmp_path):
    """A reader runs it, changes something, runs it again: on the same database, where
    its company exists by then."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README lost its handler example"
    for _ in range(2):
        result = run(blocks[0], tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "done 1 None"
    assert (tmp_path / "cb.db").exists()


def test_the_job_results_example_runs_and_runs_again(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    [example] = [block for block in blocks if '@board.handler("wordcount")' in block]
    printed = re.search(r"print\(job.status, job.result\)  # (.*)", example).group(1)
    for _ in range(2):
        result = run(example, tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == printed == "done {'words': 5, 'longest': 'awaits'}"
