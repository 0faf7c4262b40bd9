"""Modal screens the main screen asks questions with: confirm, filter, search. Each
dismisses with its answer (None when the operator backs out)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from .model import STATUSES, JobFilter


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
    """Pick a status, company and job type; blank means any."""

    BINDINGS = [Binding("escape", "back", "back")]

    def __init__(self, current: JobFilter, companies: dict[str, str], job_types: list[str]) -> None:
        super().__init__()
        self.current = current
        self.companies = companies
        self.job_types = sorted(set(job_types) | ({current.job_type} - {None}))

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Show only jobs matching (blank: any)")
            yield Select(
                [(s, s) for s in STATUSES],
                prompt="any status",
                value=self.current.status or Select.NULL,
                id="status",
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
        values = [
            self.query_one(f"#{name}", Select).value for name in ("status", "company", "type")
        ]
        status, company, job_type = (None if v == Select.NULL else str(v) for v in values)
        self.dismiss(JobFilter(status, company, job_type, self.current.text))

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
