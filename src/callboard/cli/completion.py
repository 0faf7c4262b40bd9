"""`callboard completion bash|zsh`: a shell completion script, generated from the
command line's own parser, so it knows every command, subcommand and flag of the
installed version and cannot drift from them.

The script holds the parser as plain tables (a `case` per question: which commands
follow this command path, which flags it takes, which of them take a value, which
values are offered) and a small function that walks the words typed so far. It runs
nothing at completion time: no Python start-up per Tab. Values with no fixed set
(paths, URLs, ids) fall back to the shell's file completion.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .common import EXIT_OK, add_command

SHELLS = ("bash", "zsh")


@dataclass
class Level:
    """What may be typed after one command path ("" for `callboard` itself)."""

    path: str
    commands: dict[str, str] = field(default_factory=dict)  # name -> summary
    options: dict[str, str] = field(default_factory=dict)  # flag -> help
    takes_value: set[str] = field(default_factory=set)
    choices: dict[str, list[str]] = field(default_factory=dict)  # flag -> values
    positional_choices: list[str] = field(default_factory=list)


def levels(parser: argparse.ArgumentParser, path: str = "") -> Iterator[Level]:
    """Every command path of `parser`, depth first."""
    level = Level(path)
    below: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                if sub.prog.rsplit(" ", 1)[-1] != name:
                    continue  # an alias
                level.commands[name] = _one_line(summaries.get(name, ""))
                below.append((name, sub))
        elif action.option_strings:
            if action.help == argparse.SUPPRESS:
                continue
            for flag in action.option_strings:
                level.options[flag] = _one_line(action.help or "")
                if action.nargs != 0:
                    level.takes_value.add(flag)
                    # A type that checks lists of values names them in `choices`.
                    values = action.choices or getattr(action.type, "choices", None)
                    if values:
                        level.choices[flag] = [str(c) for c in values]
        elif action.choices:
            level.positional_choices += [str(c) for c in action.choices]
    yield level
    for name, sub in below:
        yield from levels(sub, f"{path} {name}".strip())


def _one_line(text: str) -> str:
    text = re.sub(r"\s+", " ", text.replace("%(default)s", "").replace("%%", "%")).strip()
    return text.split("; ")[0].split(" (")[0][:70]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _case(levels_: list[Level], body: Any) -> str:
    """A `case "$1" in` over the command paths, one branch per level with content."""
    branches = []
    for level in levels_:
        value = body(level)
        if value:
            branches.append(f"        {_quote(level.path)}) {value} ;;")
    return '    case "$1" in\n' + "\n".join(branches) + "\n    esac"


def _tables(levels_: list[Level], words: str) -> str:
    """The shell functions both scripts share (bash and zsh read them the same way)."""

    def pairs(level: Level) -> str:
        flags = " ".join(
            f"{flag}) {words} {' '.join(_quote(c) for c in level.choices[flag])} ;;"
            for flag in sorted(level.choices)
        )
        return f'case "$2" in {flags} esac' if flags else ""

    return "\n".join(
        [
            "_callboard_commands() {",
            _case(levels_, lambda lv: f"{words} {' '.join(lv.commands)}" if lv.commands else ""),
            "}",
            "_callboard_options() {",
            _case(levels_, lambda lv: f"{words} {' '.join(lv.options)}" if lv.options else ""),
            "}",
            "_callboard_takes_value() {",
            _case(
                levels_,
                lambda lv: (
                    f'case "$2" in {"|".join(sorted(lv.takes_value))}) return 0 ;; esac'
                    if lv.takes_value
                    else ""
                ),
            ),
            "    return 1",
            "}",
            "_callboard_choices() {",
            _case(levels_, pairs),
            "}",
            "_callboard_positional() {",
            _case(
                levels_,
                lambda lv: (
                    f"{words} {' '.join(_quote(c) for c in lv.positional_choices)}"
                    if lv.positional_choices
                    else ""
                ),
            ),
            "}",
            # Walks the words before the cursor: flags (and the value after a flag that
            # takes one) are stepped over, a word naming a command of the path so far
            # extends it.
            "_callboard_path() {",
            '    local cb_path="" cb_word cb_i=$1',
            "    shift",
            '    while [ "$#" -gt 0 ] && [ "$cb_i" -gt 0 ]; do',
            '        cb_word="$1"; shift; cb_i=$((cb_i - 1))',
            '        case "$cb_word" in',
            "            --*=*) ;;",
            "            -*)",
            '                if _callboard_takes_value "$cb_path" "$cb_word" '
            '&& [ "$cb_i" -gt 0 ]; then',
            "                    shift; cb_i=$((cb_i - 1))",
            "                fi ;;",
            "            *)",
            '                case " $(_callboard_commands "$cb_path") " in',
            '                    *" $cb_word "*) cb_path="${cb_path:+$cb_path }$cb_word" ;;',
            "                esac ;;",
            "        esac",
            "    done",
            '    printf "%s" "$cb_path"',
            "}",
        ]
    )


def bash_script(parser: argparse.ArgumentParser) -> str:
    tables = _tables(list(levels(parser)), "echo")
    return f"""# bash completion for callboard, generated by `callboard completion bash`.
# Load it with:  eval "$(callboard completion bash)"   (e.g. in ~/.bashrc), or save it
# as ~/.local/share/bash-completion/completions/callboard
{tables}
_callboard() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="" cb_path words
    [ "$COMP_CWORD" -gt 1 ] && prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    cb_path="$(_callboard_path $((COMP_CWORD - 1)) "${{COMP_WORDS[@]:1}}")"
    COMPREPLY=()
    if [ -n "$prev" ] && [ "${{prev#-}}" != "$prev" ] \\
        && _callboard_takes_value "$cb_path" "$prev"; then
        words="$(_callboard_choices "$cb_path" "$prev")"
        [ -n "$words" ] && COMPREPLY=($(compgen -W "$words" -- "$cur"))
        return 0  # no fixed values: the shell completes file names
    fi
    case "$cur" in
        -*) words="$(_callboard_options "$cb_path")" ;;
        *) words="$(_callboard_commands "$cb_path")"
           [ -z "$words" ] && words="$(_callboard_positional "$cb_path")" ;;
    esac
    [ -n "$words" ] && COMPREPLY=($(compgen -W "$words" -- "$cur"))
    return 0
}}
complete -o bashdefault -o default -F _callboard callboard
"""


def _zsh_descriptions(levels_: list[Level]) -> str:
    """`name:summary` lines for zsh's `_describe`, per command path."""

    def entries(items: dict[str, str]) -> str:
        escaped = {name.replace(":", "\\:"): text for name, text in items.items()}
        return " ".join(
            _quote(f"{name}:{text}" if text else name) for name, text in escaped.items()
        )

    return "\n".join(
        [
            "_callboard_describe_commands() {",
            _case(levels_, lambda lv: f"reply=({entries(lv.commands)})" if lv.commands else ""),
            "}",
            "_callboard_describe_options() {",
            _case(levels_, lambda lv: f"reply=({entries(lv.options)})" if lv.options else ""),
            "}",
        ]
    )


def zsh_script(parser: argparse.ArgumentParser) -> str:
    levels_ = list(levels(parser))
    return f"""#compdef callboard
# zsh completion for callboard, generated by `callboard completion zsh`.
# Load it with:  source <(callboard completion zsh)   (in ~/.zshrc, after compinit), or
# save it as _callboard in a directory of your $fpath
{_tables(levels_, "echo")}
{_zsh_descriptions(levels_)}
_callboard() {{
    local cur="${{words[CURRENT]}}" prev="${{words[CURRENT-1]}}" cb_path
    local -a reply values
    cb_path="$(_callboard_path $((CURRENT - 2)) "${{(@)words[2,-1]}}")"
    if [[ $CURRENT -gt 2 && $prev == -* ]] && _callboard_takes_value "$cb_path" "$prev"; then
        values=(${{(z)"$(_callboard_choices "$cb_path" "$prev")"}})
        if (( $#values )); then
            compadd -- ${{(Q)values[@]}}
        else
            _files
        fi
        return
    fi
    if [[ $cur == -* ]]; then
        _callboard_describe_options "$cb_path"
        _describe -t options 'option' reply
        return
    fi
    _callboard_describe_commands "$cb_path"
    if (( $#reply )); then
        _describe -t commands 'command' reply
        return
    fi
    values=(${{(z)"$(_callboard_positional "$cb_path")"}})
    if (( $#values )); then
        compadd -- ${{(Q)values[@]}}
    else
        _files
    fi
}}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _callboard "$@"
else
    compdef _callboard callboard
fi
"""


def add_commands(commands: Any, root: argparse.ArgumentParser) -> None:
    """`completion`, which prints the scripts of `root` (the whole command line)."""
    completion = add_command(
        commands,
        "completion",
        "print a shell completion script (bash or zsh)",
        "Print a completion script for bash or zsh: Tab then completes commands, "
        "subcommands, flags and the flags' fixed values. It is made from this "
        "version's own parser; load it again after an upgrade.",
        [
            'eval "$(callboard completion bash)"        # in ~/.bashrc',
            "callboard completion bash > ~/.local/share/bash-completion/completions/callboard",
            "source <(callboard completion zsh)         # in ~/.zshrc, after compinit",
        ],
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    completion.set_defaults(run=lambda args: run(root, args))


def run(root: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    script = bash_script(root) if args.shell == "bash" else zsh_script(root)
    sys.stdout.write(script)
    return EXIT_OK
