"""How the CLI shows progress and verdicts."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from rb_common.events import Event, EventType
from rb_engine.coordinator import ExecutionState

OK, BAD, SKIP = "[green]✓[/green]", "[red]✗[/red]", "[dim]–[/dim]"


def check_line(console: Console, ok: bool, label: str, detail: str = "") -> None:
    suffix = f" [dim]— {escape(detail)}[/dim]" if detail else ""
    console.print(f"  {OK if ok else BAD} {escape(label)}{suffix}", highlight=False)


def continues(state: ExecutionState, step_id: str) -> bool:
    try:
        return state.definition.step(step_id).on_failure == "continue"
    except (KeyError, StopIteration, ValueError):
        return False


def continued_failures(state: ExecutionState) -> list[str]:
    """Steps that failed while the run went on (on_failure: continue)."""
    return [sid for sid in state.order if state.steps[sid].status == "FAILED" and continues(state, sid)]


_TARGET = {"duration_seconds": "≤", "error_rate": "≤", "success_rate": "≥"}


def kpi_lines(console: Console, kpis: dict[str, Any], failed_on: list[str]) -> int:
    """The KPIs as `rb test` shows them: ✓/✗ against a target, a value without one; the number
    of breached targets."""
    if not kpis:
        return 0
    console.print("KPIs:", highlight=False)
    breached = 0
    for name, kpi in kpis.items():
        value = kpi.get("value")
        shown = f"{value:.3g}" if isinstance(value, float) else escape(str(value))
        target = kpi.get("target")
        wanted = (
            f" (target {_TARGET.get(name, '')} {target})".replace("  ", " ") if target is not None else ""
        )
        detail = ""
        if kpi.get("error"):
            detail = f" [dim]— {escape(str(kpi['error']))}[/dim]"
        elif kpi.get("ok") is False and name in ("success_rate", "error_rate") and failed_on:
            detail = f" [dim]— failed under on_failure: continue: {escape(', '.join(failed_on))}[/dim]"
        mark = "[dim]·[/dim]" if kpi.get("ok") is None else OK if kpi["ok"] else BAD
        breached += kpi.get("ok") is False
        console.print(f"  {mark} kpi {escape(name)} = {shown}{wanted}{detail}", highlight=False)
    return breached


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
            if data.get("will_retry"):
                after = f" [dim](retry in {data['retry_delay']:.2f}s)[/dim]"
            elif not phase and continues(state, str(data.get("step_id", ""))):
                after = (
                    " [dim](on_failure: continue: the run goes on; it counts against the success rate)[/dim]"
                )
            else:
                after = ""
            c.print(f"  {BAD} {step}{phase}: {escape(str(data.get('error')))}{after}", highlight=False)
        elif event.type == EventType.KPI_EVALUATED:
            kpi_lines(c, data.get("kpis") or {}, continued_failures(state))
        elif event.type == EventType.STEP_SKIPPED:
            c.print(f"  {SKIP} {step} skipped: {escape(str(data.get('reason')))}", highlight=False)
        elif event.type == EventType.STEPS_SKIPPED:
            ids = [str(s) for s in data.get("step_ids") or []]
            shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            c.print(
                f"  {SKIP} {len(ids)} skipped ({escape(shown)}): {escape(str(data.get('reason')))}",
                highlight=False,
            )
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
            breached = sorted(
                k for k, v in ((state.kpis or {}).get("kpis") or {}).items() if v.get("ok") is False
            )
            if breached:
                reason += f" [yellow](KPI targets breached: {', '.join(breached)})[/yellow]"
            c.print(f"[{colour}]{state.status}[/{colour}]{reason}", highlight=False)
