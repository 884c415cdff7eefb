"""How the CLI shows progress and verdicts."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from rb_common.events import Event, EventType
from rb_engine.coordinator import ExecutionState

OK, BAD, SKIP = "[green]✓[/green]", "[red]✗[/red]", "[dim]–[/dim]"


def check_line(console: Console, ok: bool, label: str, detail: str = "") -> None:
    suffix = f" [dim]— {escape(detail)}[/dim]" if detail else ""
    console.print(f"  {OK if ok else BAD} {escape(label)}{suffix}", highlight=False)


class Progress:
    """One line per step transition, printed as events are recorded."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, event: Event, state: ExecutionState) -> None:
        data = event.data
        step = escape(str(data.get("step_id", "")))
        phase = " (rollback)" if data.get("phase") == "rollback" else ""
        c = self.console
        if event.type == EventType.EXECUTION_REQUESTED:
            c.print(
                f"execution [bold]{event.execution_id}[/bold] "
                f"({escape(state.definition.id)} {escape(state.definition.version)})",
                highlight=False,
            )
        elif event.type == EventType.ASSUMPTION_CHECKED:
            c.print(f"  {OK if data['ok'] else BAD} assumption {escape(data['name'])}", highlight=False)
        elif event.type == EventType.STEP_STARTED:
            attempt = f" attempt {data['attempt']}" if data["attempt"] > 1 else ""
            c.print(f"  [cyan]▶[/cyan] {step}{phase}{attempt}", highlight=False)
        elif event.type == EventType.STEP_SUCCEEDED:
            c.print(f"  {OK} {step}{phase}", highlight=False)
        elif event.type == EventType.STEP_FAILED:
            retry = f" [dim](retry in {data['retry_delay']:.2f}s)[/dim]" if data.get("will_retry") else ""
            c.print(f"  {BAD} {step}{phase}: {escape(str(data.get('error')))}{retry}", highlight=False)
        elif event.type == EventType.STEP_SKIPPED:
            c.print(f"  {SKIP} {step} skipped: {escape(str(data.get('reason')))}", highlight=False)
        elif event.type == EventType.ROLLBACK_STARTED:
            c.print(
                f"  [yellow]↺[/yellow] rolling back: {escape(', '.join(data['compensate']) or 'nothing')}"
            )
        elif event.type in (
            EventType.EXECUTION_SUCCEEDED,
            EventType.EXECUTION_FAILED,
            EventType.EXECUTION_ABORTED,
            EventType.EXECUTION_CANCELLED,
        ):
            colour = "green" if event.type == EventType.EXECUTION_SUCCEEDED else "red"
            reason = f": {escape(str(data['reason']))}" if data.get("reason") else ""
            c.print(f"[{colour}]{state.status}[/{colour}]{reason}", highlight=False)
