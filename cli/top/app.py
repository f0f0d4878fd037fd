"""The interactive `ironsight top`: a Textual app around the fleet and node views.

Textual owns the terminal (keys, resizes, colour or none, SSH); the views are plain
Rich renderables drawn for the screen's current size, so what a test renders as
text is what the terminal shows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Input, Static

from ironsight.cli.backend import QueryError
from ironsight.cli.top.fleet import View, fleet_view
from ironsight.cli.top.model import Finding, Snapshot
from ironsight.cli.top.node import node_view
from ironsight.cli.top.session import Session


class Screenful(Widget):
    """The whole screen: the current view, redrawn for the size it is given."""

    can_focus = True  # the keys come here unless the filter box is open

    def render(self) -> RenderableType:
        app = self.app
        assert isinstance(app, TopApp)
        return app.draw(self.size.width, self.size.height)


class Explained(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,e", "dismiss", "back")]

    def __init__(self, body: RenderableType) -> None:
        super().__init__()
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self.body)
            yield Static(Text("Esc: back (arrows, PgUp/PgDn scroll)", style="dim"))

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


class TopApp(App[None]):
    AUTO_FOCUS = "Screenful"
    CSS = """
    Screenful { height: 1fr; }
    Input { dock: bottom; display: none; height: 1; border: none; padding: 0; }
    Input.open { display: block; }
    Explained { background: $background; }
    Explained VerticalScroll { height: 100%; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", show=False, priority=True),  # as in top and nvitop, not Textual's copy
        Binding("up,k", "move(-1)", show=False),
        Binding("down,j", "move(1)", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown,space", "page(1)", show=False),
        Binding("home", "move(-1000000)", show=False),
        Binding("end", "move(1000000)", show=False),
        Binding("enter", "open", show=False),
        Binding("escape,backspace,left", "leave", show=False),
        Binding("slash", "filter", show=False),
        Binding("e", "explain", show=False),
        Binding("g", "group", show=False),
        Binding("r", "poll", show=False),
    ]

    def __init__(
        self,
        session: Session,
        refresh: float,
        node: str | None = None,
        fleet: View | None = None,
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__()
        self.session, self.every, self.alive = session, refresh, alive
        self.node = node  # the node shown in detail, None: the fleet
        self.fleet = fleet or View(job=session.job)
        self.detail = View(job=session.job, source=self.fleet.source)
        self.snap: Snapshot | None = None
        self.problem = ""
        self._asking = False

    def compose(self) -> ComposeResult:
        yield Screenful()
        yield Input(placeholder="nodes matching (substring or glob), Enter to apply, Esc to clear")

    def on_mount(self) -> None:
        self.set_interval(self.every, self.action_poll)
        self.action_poll()

    def draw(self, width: int, height: int) -> RenderableType:
        now = datetime.now(UTC).replace(tzinfo=None)
        if self.snap is None:
            return Text(self.problem or "asking the store...", style="yellow" if self.problem else "dim")
        view = self._view
        view.width, view.height = width, height - (1 if self.problem else 0)
        body = node_view(self.snap, self.node, view, now) if self.node else fleet_view(self.snap, view, now)
        if not self.problem:
            return body
        return Group(Text(self.problem, style="bold yellow", no_wrap=True, overflow="ellipsis"), body)

    def action_poll(self) -> None:
        if not self.alive():
            self.exit()
            return
        if not self._asking:  # a slow store gets one question at a time, not a queue of them
            self._asking = True
            self.ask(self.node)

    @work(thread=True, group="ask")
    def ask(self, node: str | None) -> None:
        try:
            snap: Snapshot | None = self.session.snapshot(node)
            problem = ""
        except QueryError as exc:
            snap, problem = None, f"{exc} (retrying every {self.every:g} s)"
        except Exception as exc:  # a live view outlasts a bad answer: it says so and retries
            snap, problem = None, f"{type(exc).__name__}: {exc} (retrying every {self.every:g} s)"
        self.call_from_thread(self.show, snap, problem, node)

    def show(self, snap: Snapshot | None, problem: str, node: str | None) -> None:
        self._asking = False
        self.problem = problem
        if snap is not None and node == self.node:  # not an answer about a node since left
            self.snap = snap
        self.query_one(Screenful).refresh()

    @property
    def _view(self) -> View:
        return self.detail if self.node else self.fleet

    def _lines(self) -> list[Any]:
        """What the cursor moves over, in the order shown: the node's findings, the jobs, or the nodes."""
        if self.snap is None:
            return []
        if self.node:
            return self.snap.by_node.get(self.node, [])
        if self.fleet.by_job:
            return self.snap.job_attention()
        return self.snap.attention(self.fleet.pattern, self.fleet.within)

    def _under_cursor(self) -> Any:
        lines = self._lines()
        return lines[min(self._view.cursor, len(lines) - 1)] if lines else None

    def action_move(self, by: int) -> None:
        self._view.cursor = max(0, min(len(self._lines()) - 1, self._view.cursor + by))
        self.query_one(Screenful).refresh()

    def action_page(self, by: int) -> None:
        self.action_move(by * (self._view.page_rows() or 1))

    def action_group(self) -> None:
        """Lines per job, or back to lines per node."""
        if not self.node:
            self.fleet.by_job, self.fleet.within, self.fleet.cursor = not self.fleet.by_job, None, 0
            self.query_one(Screenful).refresh()

    def action_open(self) -> None:
        picked = None if self.node else self._under_cursor()
        if picked is None:
            return
        if self.fleet.by_job:  # a job's nodes
            self.fleet.within = picked["job"]
            self.fleet.by_job, self.fleet.cursor = False, 0
            self.query_one(Screenful).refresh()
        else:
            self.node = picked["node"]
            self.detail.cursor = 0
            self._asking = False  # an answer about the fleet in flight is dropped when it lands
            self.action_poll()
            self.query_one(Screenful).refresh()

    def action_leave(self) -> None:
        box = self.query_one(Input)
        if box.has_class("open"):  # Esc in the filter box: no filter
            box.value, self.fleet.pattern = "", ""
            box.remove_class("open")
            self.query_one(Screenful).focus()
            self.query_one(Screenful).refresh()
        elif self.node:
            self.node = None
            self.query_one(Screenful).refresh()
            self.action_poll()
        elif self.fleet.within:  # from a job's nodes back to the jobs
            self.fleet.within, self.fleet.by_job, self.fleet.cursor = None, True, 0
            self.query_one(Screenful).refresh()

    def action_filter(self) -> None:
        box = self.query_one(Input)
        box.value = self.fleet.pattern
        box.add_class("open")
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.fleet.pattern, self.fleet.cursor = event.value.strip(), 0
        event.input.remove_class("open")
        self.query_one(Screenful).focus()
        self.query_one(Screenful).refresh()

    def action_explain(self) -> None:
        """The selected finding in the node view; in the fleet view, the selected node's worst."""
        picked = self._under_cursor()
        if self.snap is None or picked is None or isinstance(picked, Finding):
            pick = picked
        else:
            key, found_by = ("job", self.snap.by_job) if self.fleet.by_job else ("node", self.snap.by_node)
            found = found_by.get(picked[key], [])
            pick = found[0] if found else None
        if pick is None:
            self.notify("no open finding here", timeout=2)
            return
        self.explain(pick.id, self.snap.ref if self.snap else None)

    @work(thread=True, group="explain")
    def explain(self, finding_id: int, ref: datetime | None) -> None:
        try:
            body = self.session.explain(finding_id, ref)
        except Exception as exc:  # shown in place of the explanation; the view goes on
            body = Text(f"finding {finding_id} could not be explained: {exc}", style="yellow")
        self.call_from_thread(self.push_screen, Explained(body))
