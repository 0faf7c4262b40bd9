"""The command line's options are the same wherever they mean the same thing (issue:
"the operator's first hour"): --debug after any command, --token-file on every client
command, --help listing only what a command uses, help for a bare command, --version."""

from __future__ import annotations

from importlib import metadata

import pytest

from callboard.cli.main import _all_parsers, build_parser, main


def command_parsers():
    parser = build_parser()
    return [p for p in _all_parsers(parser) if p is not parser]


def options(parser) -> set[str]:
    return set(parser._option_string_actions)


def test_every_command_accepts_debug_after_it():
    missing = [p.prog for p in command_parsers() if "--debug" not in options(p)]
    assert missing == []


@pytest.mark.parametrize(
    "argv",
    [
        ["dashboard", "--debug"],
        ["serve", "--debug"],
        ["migrate", "--debug"],
        ["storage", "copy", "--to", "file:///tmp/x", "--debug"],
        ["jobs", "--debug"],
        ["companies", "list", "--debug"],
    ],
)
def test_debug_is_the_same_flag_before_and_after_the_command(argv):
    assert build_parser().parse_args(argv).debug is True
    assert build_parser().parse_args(["--debug", *argv]).debug is True
    assert build_parser().parse_args(argv[:-1]).debug is False


def test_every_client_command_takes_token_file_with_the_same_meaning():
    clients = [p for p in command_parsers() if "--url" in options(p)]
    assert len(clients) > 15  # submit, jobs, ..., dashboard
    for parser in clients:
        assert {"--token", "--token-file", "--data-dir", "--config"} <= options(parser), parser.prog
        token_file = parser._option_string_actions["--token-file"]
        assert token_file.metavar == "PATH", parser.prog


def test_token_and_token_file_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["jobs", "--token", "a", "--token-file", "b"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_migrate_help_lists_only_what_migrate_uses(capsys):
    parser = next(p for p in command_parsers() if p.prog == "callboard migrate")
    assert options(parser) == {"-h", "--help", "--data-dir", "--database", "--config", "--debug"}
    with pytest.raises(SystemExit):
        main(["migrate", "--help"])
    text = capsys.readouterr().out
    for serve_only in ("--workers", "--handlers", "--lease-seconds", "--bind", "--storage-url"):
        assert serve_only not in text
    assert "callboard migrate --data-dir" in text  # an example


def test_a_bare_callboard_prints_the_help_and_exits_2(capsys):
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: callboard")
    assert "serve" in err and "dashboard" in err and "first steps" in err


def test_a_bare_command_group_prints_its_help(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["companies"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: callboard companies")
    assert "set-max-running" in err


def test_a_missing_required_option_is_still_one_line(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["storage", "copy"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--to" in err


def test_version_comes_from_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"callboard {metadata.version('callboard')}\n"
