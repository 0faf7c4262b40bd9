"""Every `callboard` command in the README, run as written against a real server.

From each ```sh block this takes the lines that run `callboard` (or
`.venv/bin/callboard`, after optional `VAR=value` prefixes), and the assignments
`NAME=$(callboard ...)`, whose value later lines may use (`"$JOB"`). They run in
README order, each through bash, from a directory that looks like a checkout where
`make run` is serving: `.venv` (linked to this one, and on PATH), `callboard-data`,
a copy of README.md, and every ```python block whose first line is `# NAME.py`
saved as NAME.py (and every ```toml block whose first line is `# NAME.toml`, as
NAME.toml).

What a line's trailing comment says is checked: `exits N` expects exit code N (else
0); `Ctrl-C` marks a command that runs until interrupted: it must print something,
then SIGINT ends it with 130. A `callboard serve` line replaces the running server
(as the README's reader stops `make run` and starts it again). Commands that need a
company get one: if none exists yet, `acme` is created first; a later
`companies create` of a name that exists then only has to say so.

`CALLBOARD_README_UNDER_TEST=path` runs this against a draft instead of README.md.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_kit import wait_for

from callboard.client import Client

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = Path(os.environ.get("CALLBOARD_README_UNDER_TEST") or ROOT / "README.md")
VENV = ROOT / ".venv"

_PREFIX = r"(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:\.venv/bin/)?callboard\s"
COMMAND = re.compile(rf"^{_PREFIX}")
ASSIGNMENT = re.compile(rf"^([A-Z_][A-Z0-9_]*)=\$\({_PREFIX}.*\)$")


@dataclass(frozen=True)
class Step:
    shell: str  # the line without its comment
    comment: str
    assigns: str | None  # NAME for NAME=$(callboard ...)

    @property
    def expected(self) -> int:
        found = re.search(r"\bexits (\d+)", self.comment)
        return int(found.group(1)) if found else 0

    @property
    def until_interrupted(self) -> bool:
        return "ctrl-c" in self.comment.lower()

    @property
    def serves(self) -> bool:
        return re.search(r"\bcallboard serve\b", self.shell) is not None

    @property
    def creates_company(self) -> str | None:
        found = re.search(r"\bcallboard companies create (\S+)", self.shell)
        return found.group(1) if found else None


def split_comment(line: str) -> tuple[str, str]:
    """`cmd  # comment` -> (cmd, comment), minding quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def readme_steps(text: str) -> list[Step]:
    steps = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for raw in block.splitlines():
            shell, comment = split_comment(raw.strip())
            assignment = ASSIGNMENT.match(shell)
            if assignment or COMMAND.match(shell):
                steps.append(Step(shell, comment, assignment.group(1) if assignment else None))
    return steps


def readme_files(text: str) -> dict[str, str]:
    files = {}
    for block in re.findall(r"```(?:python|toml)\n(.*?)```", text, flags=re.S):
        named = re.match(r"# ([\w./-]+\.(?:py|toml))\n", block)
        if named:
            files[named.group(1)] = block
    return files


# --- a server started as the README starts it --------------------------------------------


@dataclass
class Node:
    proc: subprocess.Popen[str]
    url: str
    token: str
    log: threading.Thread  # keeps reading the server's output, so it never blocks

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def start_node(command: str, cwd: Path, env: dict[str, str]) -> Node:
    """Run a `callboard serve` line on a free port (CALLBOARD_BIND) and wait until it
    serves."""
    proc = subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env={**env, "CALLBOARD_BIND": "127.0.0.1:0", "CALLBOARD_SHUTDOWN_GRACE": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = proc.stdout
    assert output is not None
    log = []
    for line in output:
        log.append(line)
        found = re.search(r"serving the API on (http://\S+)", line)
        if found:
            token = (cwd / "callboard-data" / "operator.token").read_text().strip()
            drain = threading.Thread(target=lambda: [None for _ in output], daemon=True)
            drain.start()
            return Node(proc, found.group(1), token, drain)
    proc.wait()
    output.close()
    raise AssertionError(f"`{command}` did not start:\n{''.join(log)}")


@contextmanager
def checkout(tmp_path: Path, text: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """A directory like the reader's checkout, and the environment its shell has."""
    (tmp_path / ".venv").symlink_to(VENV)
    shutil.copy(README, tmp_path / "README.md")
    for name, source in readme_files(text).items():
        (tmp_path / name).write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBOARD_")}
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    yield tmp_path, env


def run_step(step: Step, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    if step.assigns:
        script = f'{step.shell}\nrc=$?\nprintf %s "${step.assigns}"\nexit $rc'
    else:
        script = step.shell
    if not step.until_interrupted:
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=90,
        )
        return done.returncode, done.stdout, done.stderr
    with subprocess.Popen(
        ["bash", "-c", script],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        out: list[str] = []
        stdout, stderr = proc.stdout, proc.stderr
        assert stdout is not None and stderr is not None
        reader = threading.Thread(target=lambda: out.extend(stdout), daemon=True)
        reader.start()
        try:
            wait_for(lambda: out, timeout=30, what=f"output from `{step.shell}`")
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            reader.join(timeout=5)
        return proc.returncode, "".join(out), stderr.read()


def make_run() -> str:
    """What `make run` runs, from the Makefile, as the reader's shell would spell it."""
    recipe = re.search(r"^run:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe, "the Makefile lost its run target"
    return recipe.group(1).replace("$(BIN)/", ".venv/bin/")


# --- the tests -----------------------------------------------------------------------------


def test_the_readme_shows_a_newcomers_first_commands():
    """The issue's first ten minutes, as commands the next test runs."""
    shells = [step.shell for step in readme_steps(README.read_text())]

    def shown(pattern: str) -> bool:
        return any(re.search(pattern, shell) for shell in shells)

    assert shown(r"callboard submit demo\.sleep --input '\{\"seconds\": 5\}' --follow$")
    assert shown(r"callboard jobs\b") and shown(r"callboard events\b")
    assert shown(r"callboard serve --handlers \w+")
    assert any("import callboard" in source for source in readme_files(README.read_text()).values())


def test_every_readme_command_runs_as_written(tmp_path):
    text = README.read_text()
    steps = readme_steps(text)
    assert steps, "the README shows no callboard command"
    failures = []
    with checkout(tmp_path, text) as (cwd, env):
        node = start_node(make_run(), cwd, env)
        variables: dict[str, str] = {}
        try:
            for step in steps:
                if step.serves:
                    node.stop()
                    node = start_node(step.shell, cwd, {**env, **variables})
                    continue
                with Client(node.url, node.token) as client:
                    names = {c["name"] for c in client.companies()}
                    if not names and not step.creates_company:
                        client.create_company("acme")
                step_env = {**env, **variables, "CALLBOARD_URL": node.url}
                code, out, err = run_step(step, cwd, step_env)
                if step.assigns:
                    variables[step.assigns] = out.strip()
                expected = 130 if step.until_interrupted else step.expected
                if step.creates_company in names and "already exists" in err:
                    expected = 1  # created here already, because a command needed it
                if code != expected or "Traceback" in err:
                    failures.append(f"`{step.shell}` exited {code}, not {expected}:\n{err}")
                elif step.until_interrupted and not out.strip():
                    failures.append(f"`{step.shell}` printed nothing before Ctrl-C")
        finally:
            node.stop()
    assert not failures, "\n".join(failures)
