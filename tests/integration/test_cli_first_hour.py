"""The operator's first hour, through the installed `callboard` command: a port already
in use, handlers beside the working directory, a calm Ctrl-C, --token-file and the
configuration file on every command that reads them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cli_kit import CALLBOARD, wait_for
from serve_process import serve, serving_command

pytestmark = pytest.mark.slow


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBOARD_")}
    return {**env, **extra}


@contextmanager
def port_in_use() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def run(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [CALLBOARD, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env or clean_env(),
        timeout=timeout,
    )


def serving(cwd: Path, *args: str, env: dict[str, str] | None = None):
    """`callboard serve` (the console script, as a user types it) on a free port."""
    return serving_command(
        [CALLBOARD, "serve", "--bind", "127.0.0.1:0", *args], env=env or clean_env(), cwd=cwd
    )


def test_serve_on_a_port_in_use_is_one_line_exit_2_and_writes_nothing(tmp_path):
    with port_in_use() as port:
        result = run(tmp_path, "serve", "--bind", f"127.0.0.1:{port}")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "in use" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no data dir, database or operator token


def _tables(url: str) -> list[str]:
    async def query() -> list[str]:
        import asyncpg

        conn = await asyncpg.connect(url, timeout=5)
        try:
            rows = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        finally:
            await conn.close()
        return [row[0] for row in rows]

    return asyncio.run(query())


@pytest.mark.parametrize("processes", ["1", "2"])
def test_serve_on_postgresql_on_a_port_in_use_is_one_line_and_migrates_nothing(
    tmp_path, pg_empty_url, processes
):
    with port_in_use() as port:
        result = run(
            tmp_path,
            "serve",
            "--bind",
            f"127.0.0.1:{port}",
            "--processes",
            processes,
            env=clean_env(CALLBOARD_DATABASE_URL=pg_empty_url),
        )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert list(tmp_path.iterdir()) == []
    assert _tables(pg_empty_url) == []


def test_handlers_are_imported_from_the_working_directory(tmp_path):
    (tmp_path / "mymodule.py").write_text(
        textwrap.dedent(
            """
            import callboard

            board = callboard.Board()


            @board.handler("hello.cwd")
            async def hello(ctx):
                await ctx.progress(100, "hello from the working directory")
            """
        )
    )
    with serving(tmp_path, "--handlers", "mymodule") as (url, log, _proc):
        env = clean_env(CALLBOARD_URL=url)
        assert run(tmp_path, "companies", "create", "acme", env=env).returncode == 0
        done = run(tmp_path, "submit", "hello.cwd", "--follow", env=env)
        assert done.returncode == 0, done.stderr + "\n".join(log)


def test_a_clean_ctrl_c_logs_calm_lines_only(tmp_path):
    with serving(tmp_path) as (_url, log, proc):
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    text = "\n".join(log)
    wait_for(lambda: "stopped" in log[-1], timeout=10, what="the last line")
    assert "child 'web' ended normally" in text
    assert "stopped for good" not in text
    assert " ERROR " not in text, text


def test_token_file_works_on_every_client_command_like_the_dashboard(tmp_path):
    with serve(tmp_path) as server:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        env = clean_env(CALLBOARD_URL=server.url)
        token_file = server.data_dir / "operator.token"
        ok = run(elsewhere, "companies", "list", "--token-file", str(token_file), env=env)
        assert ok.returncode == 0, ok.stderr
        assert run(elsewhere, "jobs", "--token-file", str(token_file), env=env).returncode == 0
        wrong = tmp_path / "wrong.token"
        wrong.write_text("cb_not-a-token\n")
        refused = run(elsewhere, "jobs", "--token-file", str(wrong), "--debug", env=env)
        assert refused.returncode != 0
        missing = run(elsewhere, "jobs", "--token-file", str(tmp_path / "none"), env=env)
        assert missing.returncode == 2
        assert (
            missing.stderr
            == f"callboard: no token in {tmp_path / 'none'} (missing, unreadable or empty)\n"
        )


def test_the_configuration_file_serves_migrates_and_finds_the_token(tmp_path):
    data = tmp_path / "srv-data"
    config = tmp_path / "callboard.toml"
    config.write_text(f'data_dir = "{data}"\nworkers = 2\n')
    migrated = run(tmp_path, "migrate", "--config", str(config))
    assert migrated.returncode == 0, migrated.stderr
    assert (data / "callboard.db").exists()
    with serving(tmp_path, env=clean_env(CALLBOARD_CONFIG=str(config))) as (url, _log, _proc):
        # A client command given the same file finds the operator token in its data_dir.
        listed = run(
            tmp_path, "--config", str(config), "companies", "list", env=clean_env(CALLBOARD_URL=url)
        )
        assert listed.returncode == 0, listed.stderr
        after = run(
            tmp_path, "companies", "list", "--config", str(config), env=clean_env(CALLBOARD_URL=url)
        )
        assert after.returncode == 0, after.stderr
    assert (data / "operator.token").exists()
    assert not (tmp_path / "callboard-data").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("wrokers = 2\n", "'wrokers' is not a setting; did you mean 'workers'?"),
        ('workers = "2"\n', "workers: expected a whole number, got str '2'"),
        ("workers = [\n", "not valid TOML"),
    ],
)
def test_a_bad_configuration_file_is_one_line_and_exit_2(tmp_path, text, message):
    config = tmp_path / "callboard.toml"
    config.write_text(text)
    for args in (
        ["serve", "--config", str(config)],
        ["--config", str(config), "migrate"],
        ["jobs", "--config", str(config)],
    ):
        result = run(tmp_path, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and message in result.stderr, (args, result.stderr)
    assert [p.name for p in tmp_path.iterdir()] == ["callboard.toml"]
    missing = run(tmp_path, "serve", env=clean_env(CALLBOARD_CONFIG=str(tmp_path / "no.toml")))
    assert missing.returncode == 2
    assert (
        missing.stderr.startswith("callboard: CALLBOARD_CONFIG ")
        and "cannot read it" in missing.stderr
    )
