"""The layout keeps its promises (docs/architecture.md): the package map matches the
code, the import rules hold, there is no import cycle, a client-only import loads no
runtime, and nothing points at a document outside the repository."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

import callboard
from callboard.config import _FIELDS, Settings
from callboard.jobs import SUBMIT_OPTIONS, JobSpec, SubmitOptions

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "callboard"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

TOP_LEVEL = {
    "__init__.py",
    "__main__.py",
    "board.py",
    "running_board.py",
    "jobs.py",
    "handlers.py",
    "errors.py",
    "config.py",
    "sizes.py",
    "testing.py",
}
RECORDS = {"callboard.jobs", "callboard.errors", "callboard.sizes", "callboard.config"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(name: str) -> set[str]:
    """The callboard modules `name` imports, at module level or inside functions;
    imports under `if TYPE_CHECKING:` are type hints and do not run."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in MODULES else source)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def package_of(name: str) -> str:
    """`callboard.store.sqlite.store` -> `callboard.store`; a top-level module is its own."""
    parts = name.split(".")
    return ".".join(parts[:2])


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def test_the_top_level_holds_the_public_modules_only():
    assert {p.name for p in PACKAGE.glob("*.py")} == TOP_LEVEL
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == {
        "runtime",
        "actors",
        "store",
        "storage",
        "web",
        "client",
        "tui",
        "cli",
    }


def test_no_module_imports_a_module_that_imports_it_back():
    assert find_cycle(GRAPH) is None


def test_no_package_imports_a_package_that_imports_it_back():
    packages: dict[str, set[str]] = {}
    for name, deps in GRAPH.items():
        if name == "callboard":
            continue
        here = package_of(name)
        packages.setdefault(here, set()).update(
            package_of(d) for d in deps if package_of(d) != here and d != "callboard"
        )
    assert find_cycle(packages) is None


def imports_under(prefix: str) -> dict[str, set[str]]:
    return {
        name: deps
        for name, deps in GRAPH.items()
        if name == prefix or name.startswith(prefix + ".")
    }


def outside(deps: set[str], *allowed: str) -> set[str]:
    return {d for d in deps if not any(d == a or d.startswith(a + ".") for a in allowed)}


@pytest.mark.parametrize(
    ("layer", "allowed"),
    [
        ("callboard.runtime", ["callboard.runtime"]),
        ("callboard.jobs", sorted(RECORDS)),
        ("callboard.errors", sorted(RECORDS)),
        ("callboard.config", sorted(RECORDS)),
        (
            "callboard.store",
            [*sorted(RECORDS), "callboard.store", "callboard.runtime"],
        ),
        (
            "callboard.storage",
            [*sorted(RECORDS), "callboard.storage", "callboard.store.base"],
        ),
        (
            "callboard.actors",
            [
                *sorted(RECORDS),
                "callboard.actors",
                "callboard.handlers",
                "callboard.runtime",
                "callboard.store.base",
                "callboard.storage",
            ],
        ),
        (
            "callboard.web",
            [
                *sorted(RECORDS),
                "callboard.web",
                "callboard.running_board",
                "callboard.storage.names",
                "callboard.store.base",
            ],
        ),
        ("callboard.client", [*sorted(RECORDS), "callboard.client"]),
        ("callboard.tui", ["callboard.tui", "callboard.client"]),
    ],
)
def test_each_layer_imports_only_what_it_may(layer, allowed):
    wrong = {
        name: sorted(outside(deps, *allowed))
        for name, deps in imports_under(layer).items()
        if outside(deps, *allowed)
    }
    assert wrong == {}


def test_only_the_serve_command_imports_the_runtime():
    runtime = ("callboard.board", "callboard.running_board", "callboard.runtime")
    runtime += ("callboard.actors", "callboard.store", "callboard.storage", "callboard.web")
    loaders = {
        name
        for name, deps in imports_under("callboard.cli").items()
        if any(d.startswith(runtime) for d in deps)
    }
    assert loaders == {"callboard.cli.serve"}


@pytest.mark.parametrize("module", ["callboard.client", "callboard.cli.main", "callboard.tui"])
def test_a_client_only_import_loads_no_runtime(module):
    code = (
        f"import sys, {module}\n"
        "print('\\n'.join(m for m in sys.modules if m.startswith('callboard')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert module in loaded
    forbidden = ("actors", "store", "storage", "runtime", "web", "board", "running_board")
    assert [m for m in loaded if m.split(".")[1:2] and m.split(".")[1] in forbidden] == []


def documented_modules() -> dict[str, str]:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("## Package map", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    entries = {}
    for line in block.strip().splitlines():
        path, _, what = line.partition(" ")
        entries[path] = what.strip()
    return entries


def test_the_package_map_matches_the_code():
    documented = documented_modules()
    actual = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")}
    assert sorted(set(documented) - actual) == [], "documented but missing"
    assert sorted(actual - set(documented)) == [], "in the code but not in docs/architecture.md"
    assert all(documented.values()), "every module says what it holds"


def test_the_configuration_table_matches_the_settings():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\w+) \| [^|]+ \| `(CALLBOARD_\w+)` \|", section, re.MULTILINE)
    assert dict(rows) == {name: env for name, (env, _) in _FIELDS.items()}
    assert set(_FIELDS) <= {f.name for f in fields(Settings)}


def test_no_reference_points_outside_the_repository():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    outside_docs = re.compile(r"DESIGN\.md|PITFALLS\.md|STYLE\.md|\.\./shared")
    found = []
    for name in tracked:
        path = ROOT / name
        if path.suffix in {".svg", ".png"} or not path.is_file() or path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if outside_docs.search(line):
                found.append(f"{name}:{number}")
    assert found == []


def test_each_submit_option_has_one_name_everywhere():
    from callboard.web.validation import OPTION_RULES

    names = list(SUBMIT_OPTIONS)
    assert [f.name for f in fields(JobSpec)] == ["job_type", "input", *names]
    assert list(SubmitOptions.__annotations__) == names
    assert list(OPTION_RULES) == names
    submit = inspect.signature(callboard.RunningBoard.submit).parameters
    assert list(submit)[4:] == names
    spec = JobSpec("noop", {}, delay=1.5, timeout=3, priority=2, max_attempts=2)
    assert spec.to_wire() == {
        "jobType": "noop",
        "input": {},
        "priority": 2,
        "delaySeconds": 1.5,
        "maxAttempts": 2,
        "timeoutSeconds": 3,
    }
