"""`callboard completion bash|zsh`: the scripts parse, and completing in the shell gives
the parser's own commands, subcommands, flags and values."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cli_kit import CALLBOARD

from callboard.cli.completion import bash_script, levels, zsh_script
from callboard.cli.main import build_parser

# (words typed, the word under the cursor last) -> what Tab offers
CASES = [
    (["callboard", "jo"], ["jobs"]),
    (["callboard", "storage", "c"], ["copy"]),
    (["callboard", "jobs", "--st"], ["--status"]),
    (["callboard", "jobs", "--status", ""], ["queued", "running", "done", "failed", "cancelled"]),
    (["callboard", "--config", "x.toml", "jo"], ["jobs"]),  # a global flag's value skipped
    (["callboard", "completion", ""], ["bash", "zsh"]),
    (["callboard", "--debug", "serve", "--wo"], ["--workers"]),
    (["callboard", "companies", ""], ["create", "list", "set-max-running"]),
    (["callboard", "dashboard", "--token-"], ["--token-file"]),
    (["callboard", "serve", "--data-dir", ""], []),  # no fixed values: file names
]


@pytest.fixture(scope="module")
def bash_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "callboard.bash"
    path.write_text(bash_script(build_parser()))
    return path


def test_the_command_prints_the_script_made_from_the_parser(tmp_path):
    for shell, make in (("bash", bash_script), ("zsh", zsh_script)):
        result = subprocess.run(
            [CALLBOARD, "completion", shell], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == make(build_parser())
    refused = subprocess.run([CALLBOARD, "completion", "fish"], capture_output=True, text=True)
    assert refused.returncode == 2 and "invalid choice: 'fish'" in refused.stderr


def test_the_bash_script_is_valid_bash(bash_file):
    result = subprocess.run(["bash", "-n", str(bash_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def complete_in_bash(script: Path, words: list[str]) -> list[str]:
    array = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    program = (
        f"source {script}\n"
        f'COMP_WORDS=({array}); COMP_CWORD={len(words) - 1}; COMP_LINE="${{COMP_WORDS[*]}}"\n'
        "_callboard\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
        "complete -p callboard >&2\n"
    )
    result = subprocess.run(["bash", "--norc", "-c", program], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "-F _callboard callboard" in result.stderr
    return result.stdout.split()


@pytest.mark.parametrize(("words", "offered"), CASES)
def test_completing_in_bash(bash_file, words, offered):
    assert complete_in_bash(bash_file, words) == offered


def test_every_command_and_flag_of_the_parser_completes_in_bash(bash_file):
    """The script holds the whole parser: each command path's subcommands and flags."""
    for level in levels(build_parser()):
        prefix = ["callboard", *level.path.split()]
        for name in level.commands:
            assert name in complete_in_bash(bash_file, [*prefix, name[:2]]), (level.path, name)
        assert set(complete_in_bash(bash_file, [*prefix, "-"])) == set(level.options), level.path


ZSH = shutil.which("zsh")
# compsys's own functions replaced by ones that print what they were given: what the
# script offers, without a terminal to drive.
ZSH_STUBS = r"""
compdef() { print -r -- "compdef $*" }
_describe() { local -a items; items=("${(@P)4}"); print -rl -- "${items[@]%%:*}" }
compadd() { shift; print -rl -- "$@" }
_files() { }
"""


@pytest.mark.skipif(ZSH is None, reason="zsh is not installed on this machine")
def test_the_zsh_script_parses_and_registers_with_compinit(tmp_path):
    script = tmp_path / "_callboard"
    script.write_text(zsh_script(build_parser()))
    assert subprocess.run([ZSH, "-n", str(script)], capture_output=True).returncode == 0
    result = subprocess.run(
        [
            ZSH,
            "-f",
            "-c",
            f"autoload -U compinit && compinit -u -D; source {script}; "
            "print -r -- $_comps[callboard]",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.stdout.strip() == "_callboard", result.stderr


@pytest.mark.skipif(ZSH is None, reason="zsh is not installed on this machine")
@pytest.mark.parametrize(("words", "offered"), CASES)
def test_completing_in_zsh(tmp_path, words, offered):
    script = tmp_path / "_callboard"
    script.write_text(zsh_script(build_parser()))
    array = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    program = (
        f"{ZSH_STUBS}\nsource {script} >/dev/null\n"
        f"words=({array}); CURRENT=${{#words}}\n_callboard\n"
    )
    result = subprocess.run([ZSH, "-f", "-c", program], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    got = result.stdout.split()
    # zsh filters by the typed prefix itself; the script offers the candidates.
    current = words[-1]
    assert [w for w in got if w.startswith(current)] == offered
