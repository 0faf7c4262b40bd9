"""The operator dashboard (`callboard dashboard`): a Textual app on the live operator
feed. It talks to the server only through `callboard.client`, like any SSE client.

Modules: `model` (the event model, plain Python), `cells` (how a job reads), `widgets`,
`dialogs` (modal questions), `screens` (the dashboard and the job detail), `app`."""

from .app import DashboardApp
from .model import DashboardModel, JobFilter

__all__ = ["DashboardApp", "DashboardModel", "JobFilter"]
