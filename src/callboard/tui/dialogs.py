"""Modal screens the main screen asks questions with: confirm, filter, search (each
dismisses with its answer, None when the operator backs out), and the keys' help."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, SelectionList, Static

from .model import STATUSES, JobFilter

#: The dashboard's keys and what they do: the help screen (?) shows them.
KEYS: tuple[tuple[str, str], ...] = (
    ("↑ ↓ PgUp PgDn", "move through the jobs"),
    ("Home / End", "first / last row (newest / oldest in the default order)"),
    ("Enter", "the selected job's details: fields, input, result, error, events"),
    ("c", "cancel the selected job (asks to confirm)"),
    ("r", "retry the selected failed or cancelled job"),
    ("f", "filter by status (several at once), company and type"),
    ("/", "search by job id or source task id"),
    ("Esc", "clear the filter and the search"),
    ("o", "sort by the next column: age, status, error, company, type, progress, try, took"),
    ("O", "reverse the sort"),
    ("click a header", "sort by that column; click again to reverse"),
    ("u", "running jobs first (on or off), whatever the sort"),
    ("n", "follow the newest job as jobs arrive (moving the cursor stops it)"),
    ("p", "pause the live view"),
    ("s", "schedules"),
    ("?", "this help"),
    ("q", "quit"),
)


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class FilterScreen(ModalScreen[JobFilter | None]):
    """Pick statuses (any number: none ticked means any), a company and a job type
    (blank means any)."""

    BINDINGS = [Binding("escape", "back", "back")]

    def __init__(self, current: JobFilter, companies: dict[str, str], job_types: list[str]) -> None:
        super().__init__()
        self.current = current
        self.companies = companies
        self.job_types = sorted(set(job_types) | ({current.job_type} - {None}))

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Show only jobs matching (nothing ticked or blank: any)")
            yield SelectionList[str](
                *[(s, s, s in self.current.statuses) for s in STATUSES], id="status"
            )
            yield Select(
                sorted((name, cid) for cid, name in self.companies.items()),
                prompt="any company",
                value=self.current.company
                if self.current.company in self.companies
                else Select.NULL,
                id="company",
            )
            yield Select(
                [(t, t) for t in self.job_types],
                prompt="any type",
                value=self.current.job_type or Select.NULL,
                id="type",
            )
            with Horizontal(classes="buttons"):
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Clear", id="clear")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "clear":
            self.dismiss(JobFilter(text=self.current.text))
            return
        statuses = frozenset(self.query_one("#status", SelectionList).selected)
        values = [self.query_one(f"#{name}", Select).value for name in ("company", "type")]
        company, job_type = (None if v == Select.NULL else str(v) for v in values)
        self.dismiss(JobFilter(statuses, company, job_type, self.current.text))

    def action_back(self) -> None:
        self.dismiss(None)


class SearchScreen(ModalScreen[str | None]):
    """Search by job id or source task id (a prefix; empty clears the search)."""

    BINDINGS = [Binding("escape", "back", "back")]

    def __init__(self, current: str | None) -> None:
        super().__init__()
        self.current = current or ""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Search by job id or source task id (empty: show all)")
            yield Input(value=self.current, placeholder="job id or task id", id="search")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_back(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """The dashboard's keys (`KEYS`)."""

    BINDINGS = [Binding("escape,question_mark,q", "close", "close")]

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 2), show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for key, what in KEYS:
            table.add_row(key, what)
        with Vertical(classes="dialog help"):
            yield Label("Keys (Esc closes)")
            yield Static(table)

    def action_close(self) -> None:
        self.dismiss(None)
