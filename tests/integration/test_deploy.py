"""deploy/: the systemd unit, the environment file and the container recipe of
docs/deploy.md, checked as far as this machine allows.

The unit is checked by `systemd-analyze verify` (where installed), and its service is
run as a plain process the way systemd would start it: its Environment= and
EnvironmentFile= settings, its data directory, its ExecStart, and its KillSignal to
stop it. The container recipe's steps run as plain processes too, with its paths
mapped into a temporary directory: COPY, the RUN steps that install callboard into a
fresh virtual environment (useradd is left out: it would add a user to this machine),
ENV, WORKDIR, then CMD serving, its HEALTHCHECK answering, and STOPSIGNAL stopping it.
Both run on the embedded store and on PostgreSQL (the environment file's commented
lines, with `callboard migrate` first as docs/deploy.md says).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serve_process import kill_process, serving_command

from callboard.cli.common import EXIT_USAGE
from callboard.cli.processes import STOP_MARGIN
from callboard.config import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "callboard.service"
ENV_FILE = DEPLOY / "callboard.env"
RECIPE = DEPLOY / "Containerfile"
VENV_BIN = Path(sys.executable).parent


# --- reading the files ----------------------------------------------------------------


def unit_settings(path: Path = UNIT) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given (systemd's keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def env_file(text: str) -> dict[str, str]:
    """VAR=value lines, as systemd's EnvironmentFile= and `--env-file` read them."""
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def postgres_env_file(url: str) -> str:
    """The environment file with its PostgreSQL lines switched on (the URL the test's)."""
    text = re.sub(r"^#(CALLBOARD_(DATABASE_URL|MIGRATE)=)", r"\1", ENV_FILE.read_text(), flags=re.M)
    text = re.sub(r"^CALLBOARD_DATABASE_URL=.*$", f"CALLBOARD_DATABASE_URL={url}", text, flags=re.M)
    assert f"CALLBOARD_DATABASE_URL={url}" in text and "\nCALLBOARD_MIGRATE=false" in text
    return text


def recipe_steps(path: Path = RECIPE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments left out."""
    steps: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        instruction, _, arguments = pending.strip().partition(" ")
        steps.append((instruction.upper(), arguments.strip()))
        pending = ""
    return steps


def exec_form(arguments: str) -> list[str]:
    import json

    return json.loads(arguments)


def env_instruction(arguments: str, env: dict[str, str]) -> dict[str, str]:
    values = {}
    for pair in shlex.split(arguments):
        name, _, value = pair.partition("=")
        values[name] = re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), value)
    return values


# --- running a node -------------------------------------------------------------------


def running(command: list[str], env: dict[str, str], cwd: Path):
    """The node a unit file or a container recipe starts, killed if a test left it
    running (the tests stop it with the recipe's own signal)."""
    return serving_command(command, env=env, cwd=cwd, stop=kill_process)


def stop_with(proc: subprocess.Popen[str], signum: int, timeout: float) -> int:
    proc.send_signal(signum)
    return proc.wait(timeout=timeout)


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CALLBOARD_")}


# --- the systemd unit -----------------------------------------------------------------


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    # verify checks that ExecStart exists: point it at this checkout's installed command.
    unit = tmp_path / "callboard.service"
    unit.write_text(UNIT.read_text().replace("/opt/callboard/bin", str(VENV_BIN)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # no unknown key, no warning


def test_the_units_stop_and_restart_policy_fit_callboard():
    service = unit_settings()["Service"]
    assert service["KillSignal"] == ["SIGTERM"]
    # Long enough for the drain: running jobs' grace, the web server's, a --processes margin.
    assert float(service["TimeoutStopSec"][0]) >= Settings().shutdown_grace + STOP_MARGIN
    assert service["RestartPreventExitStatus"] == [str(EXIT_USAGE)]
    data_dir = f"/var/lib/{service['StateDirectory'][0]}"
    assert service["WorkingDirectory"] == [data_dir]
    assert f"CALLBOARD_DATA_DIR={data_dir}" in service["Environment"]


def unit_service(tmp_path: Path, env_text: str) -> tuple[list[str], dict[str, str], Path]:
    """The unit's service as systemd would start it, its paths under tmp_path."""
    service = unit_settings()["Service"]
    state = tmp_path / "var-lib"
    mapping = {"/var/lib": str(state), "/opt/callboard/bin": str(VENV_BIN)}

    def mapped(value: str) -> str:
        for old, new in mapping.items():
            value = value.replace(old, new)
        return value

    directory = state / service["StateDirectory"][0]
    directory.mkdir(parents=True)  # StateDirectory=: systemd makes it
    env = base_env()
    for assignment in service["Environment"]:
        name, _, value = mapped(assignment).partition("=")
        env[name] = value
    [env_file_path] = service["EnvironmentFile"]
    assert env_file_path == "-/etc/callboard/callboard.env"
    env.update(env_file(env_text))  # overrides Environment=, as in systemd
    # Port 8000 may be taken on a shared machine: a free one (CALLBOARD_BIND in the file).
    env["CALLBOARD_BIND"] = "127.0.0.1:0"
    command = shlex.split(mapped(service["ExecStart"][0]))
    return command, env, Path(mapped(service["WorkingDirectory"][0]))


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_the_units_service_serves_and_stops_cleanly_on_its_kill_signal(tmp_path, store, request):
    env_text = ENV_FILE.read_text()
    if store == "postgres":
        env_text = postgres_env_file(request.getfixturevalue("pg_empty_url"))
    command, env, cwd = unit_service(tmp_path, env_text)
    assert command[1:] == ["serve"]
    if store == "postgres":
        # CALLBOARD_MIGRATE=false: the nodes refuse an old schema until it is migrated.
        migrate = subprocess.run(
            [command[0], "migrate"], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
        )
        assert migrate.returncode == 0, migrate.stderr
        assert migrate.stdout.startswith("applied migrations")
    service = unit_settings()["Service"]
    with running(command, env, cwd) as (url, log, proc):
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        assert (cwd / "operator.token").exists()  # in the StateDirectory
        assert (cwd / "callboard.db").exists() is (store == "sqlite")
        signum = signal.Signals[service["KillSignal"][0]]
        code = stop_with(proc, signum, float(service["TimeoutStopSec"][0]))
    assert code == 0, "\n".join(log)  # 0: Restart=on-failure leaves it stopped
    text = "\n".join(log)
    assert "received SIGTERM; draining" in text and text.rstrip().endswith("stopped")
    assert " ERROR " not in text, text


# --- the container recipe -------------------------------------------------------------


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> dict[str, object]:
    """The recipe's build steps, run as plain processes; what CMD then runs with."""
    root = tmp_path_factory.mktemp("image")
    mapping = {
        "/opt/callboard": str(root / "opt-callboard"),
        "/src/callboard": str(root / "src-callboard"),
        "/var/lib/callboard": str(root / "var-lib-callboard"),
    }

    def mapped(value: str) -> str:
        for old, new in mapping.items():
            value = value.replace(old, new)
        return value

    # `python` is what the base image calls its interpreter.
    tools = root / "bin"
    tools.mkdir()
    (tools / "python").symlink_to(sys.executable)
    env = {**base_env(), "PATH": f"{tools}:{os.environ['PATH']}"}
    steps = recipe_steps()
    assert steps[0][0] == "FROM" and "python:3.11" in steps[0][1]
    run_steps, skipped = [], []
    workdir = root
    for instruction, arguments in steps[1:]:
        if instruction == "COPY":
            source, target = arguments.split()
            assert source == "."
            shutil.copytree(
                ROOT,
                mapped(target),
                ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info"),
            )
        elif instruction == "RUN":
            if arguments.startswith("useradd "):
                skipped.append(arguments)
                continue
            run_steps.append(arguments)
            result = subprocess.run(
                ["sh", "-c", mapped(arguments)],
                capture_output=True,
                text=True,
                env=env,
                cwd=workdir,
                timeout=600,
            )
            assert result.returncode == 0, f"RUN {arguments}\n{result.stderr[-3000:]}"
        elif instruction == "ENV":
            env.update(env_instruction(mapped(arguments), env))
        elif instruction == "WORKDIR":
            workdir = Path(mapped(arguments))
            workdir.mkdir(parents=True, exist_ok=True)
    assert any("pip install" in step for step in run_steps)
    assert len(skipped) == 1
    assert not (root / "src-callboard").exists()  # the recipe removes the sources
    recipe = dict(steps)
    return {
        "env": env,
        "workdir": workdir,
        "cmd": exec_form(recipe["CMD"]),
        "healthcheck": exec_form(recipe["HEALTHCHECK"].split(" CMD ", 1)[1]),
        "stopsignal": signal.Signals[recipe["STOPSIGNAL"]],
        "venv": Path(mapping["/opt/callboard"]),
    }


def test_the_recipe_installs_callboard_in_its_own_environment(image):
    env = image["env"]
    venv = image["venv"]
    assert env["PATH"].split(":")[0] == str(venv / "bin")
    assert shutil.which("callboard", path=env["PATH"]) == str(venv / "bin" / "callboard")
    version = subprocess.run(
        ["callboard", "--version"], capture_output=True, text=True, env=env, timeout=60
    )
    assert version.returncode == 0 and version.stdout.startswith("callboard ")
    assert env["CALLBOARD_BIND"] == "0.0.0.0:8000"
    assert env["CALLBOARD_DATA_DIR"] == str(image["workdir"])


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_the_recipes_cmd_serves_answers_its_healthcheck_and_stops(image, tmp_path, store, request):
    env = dict(image["env"])
    workdir = tmp_path / "volume"  # a fresh volume for each run
    workdir.mkdir()
    env["CALLBOARD_DATA_DIR"] = str(workdir)
    # `-p` publishes the image's port; here a free loopback one instead of 0.0.0.0:8000.
    env["CALLBOARD_BIND"] = "127.0.0.1:0"
    if store == "postgres":  # `--env-file callboard.env`, its PostgreSQL lines on
        env.update(env_file(postgres_env_file(request.getfixturevalue("pg_empty_url"))))
        migrate = subprocess.run(
            ["callboard", "migrate"],
            capture_output=True,
            text=True,
            env=env,
            cwd=workdir,
            timeout=60,
        )
        assert migrate.returncode == 0, migrate.stderr
    with running(image["cmd"], env, workdir) as (url, log, proc):
        port = url.rsplit(":", 1)[1]
        check = [part.replace(":8000/", f":{port}/") for part in image["healthcheck"]]
        assert check != image["healthcheck"]
        health = subprocess.run(check, capture_output=True, text=True, env=env, timeout=30)
        assert health.returncode == 0, health.stderr
        assert (workdir / "operator.token").exists()
        code = stop_with(proc, image["stopsignal"], 30)
    assert code == 0, "\n".join(log)
    assert " ERROR " not in "\n".join(log)
    # After the stop, the HEALTHCHECK fails, as the container's health would.
    assert subprocess.run(check, capture_output=True, env=env, timeout=30).returncode != 0
