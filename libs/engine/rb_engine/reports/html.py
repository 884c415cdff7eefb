"""`rb test --html FILE`: one self-contained page per run (no file or network it depends on).

Per scenario: the verdict, every check, the steps (status, attempts, error), the KPIs, the
assumptions, and for each screenshot the baseline, the new image and the diff image, embedded
as `data:` URIs read from the artifact store.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from rb_engine.artifacts import ArtifactMissing, ArtifactStore
from rb_engine.testing import TestOutcome
from rb_engine.ui_testing import Screenshot

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2330;background:#fafbfc}
h1{font-size:20px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:14px;margin:16px 0 6px}
table{border-collapse:collapse;margin:4px 0 12px}td,th{border:1px solid #d6dae1;padding:3px 8px;text-align:left}
th{background:#eef0f4}.ok{color:#13772f}.bad{color:#b3261e;font-weight:600}.dim{color:#68707d}
.shots{display:flex;gap:12px;flex-wrap:wrap}.shots figure{margin:0;background:#fff;border:1px solid #d6dae1;padding:6px}
.shots img{max-width:420px;display:block}figcaption{font-size:12px;color:#68707d}
"""


def _data_uri(store: ArtifactStore, ref: dict[str, Any] | None) -> str | None:
    if not ref or not ref.get("digest"):
        return None
    try:
        data = store.get(ref["digest"])
    except (ArtifactMissing, ValueError):
        return None
    media = ref.get("media_type", "image/png")
    return f"data:{media};base64,{base64.b64encode(data).decode('ascii')}"


def _mark(ok: bool | None) -> str:
    if ok is None:
        return '<span class="dim">–</span>'
    return '<span class="ok">✓</span>' if ok else '<span class="bad">✗</span>'


def _table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return '<p class="dim">none</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _shot(store: ArtifactStore, shot: Screenshot) -> str:
    figures = []
    for role, ref in (("baseline", shot.baseline), ("new", shot.screenshot), ("diff", shot.diff)):
        uri = _data_uri(store, ref)
        if uri is None or ref is None:
            figures.append(f"<figure><figcaption>{role}: none</figcaption></figure>")
            continue
        size = f"{ref.get('width')}×{ref.get('height')}"
        figures.append(
            f'<figure data-role="{role}"><img alt="{role} of {escape(shot.step_id)}" src="{uri}">'
            f"<figcaption>{role} {escape(size)} <code>{escape(str(ref.get('digest', ''))[:19])}…</code>"
            "</figcaption></figure>"
        )
    return (
        f'<div class="screenshot" data-step="{escape(shot.step_id)}"><h3>{_mark(shot.ok)} '
        f"{escape(shot.step_id)}: {escape(shot.summary)}</h3>"
        f'<div class="shots">{"".join(figures)}</div></div>'
    )


def _scenario(store: ArtifactStore, outcome: TestOutcome) -> str:
    parts = [
        f'<section class="scenario"><h2>{_mark(outcome.passed)} {escape(outcome.name)} '
        f'<span class="dim">execution {escape(outcome.execution_id)}, {outcome.seconds:.2f}s</span></h2>',
        "<h3>Checks</h3>",
        _table(["", "check", "detail"], [[_mark(c.ok), escape(c.label), escape(c.detail)] for c in outcome.checks]),
    ]
    state = outcome.state
    if state is not None:
        steps = [
            [
                escape(sid),
                escape(state.steps[sid].status.lower()),
                str(state.steps[sid].attempt),
                escape(state.steps[sid].error or state.steps[sid].skip_reason or ""),
            ]
            for sid in state.order
        ]
        parts += ["<h3>Steps</h3>", _table(["step", "status", "attempts", "error"], steps)]
        kpis = ((state.kpis or {}).get("kpis") or {}).items()
        parts += [
            "<h3>KPIs</h3>",
            _table(
                ["", "kpi", "value", "target"],
                [
                    [
                        _mark(k.get("ok")),
                        escape(name),
                        escape(json.dumps(k.get("value"), default=str)),
                        escape(str(k.get("target", ""))),
                    ]
                    for name, k in kpis
                ],
            ),
        ]
        assumptions = [[_mark(held), escape(name)] for name, held in state.assumptions.items()]
        parts += ["<h3>Assumptions</h3>", _table(["", "assumption"], assumptions)]
    if outcome.screenshots:
        parts.append("<h3>Screenshots</h3>")
        parts += [_shot(store, shot) for shot in outcome.screenshots]
    parts.append("</section>")
    return "\n".join(parts)


def html_report(title: str, outcomes: list[TestOutcome], store: ArtifactStore) -> str:
    failed = sum(not o.passed for o in outcomes)
    verdict = (
        f'<span class="bad">FAIL</span> {len(outcomes) - failed}/{len(outcomes)} scenarios passed'
        if failed
        else f'<span class="ok">PASS</span> {len(outcomes)}/{len(outcomes)} scenarios passed'
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = "\n".join(_scenario(store, o) for o in outcomes)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>rb test: {escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>rb test {escape(title)}</h1><p>{verdict} <span class="dim">{when}</span></p>'
        f"{body}</body></html>\n"
    )


def write_html(path: Path, title: str, outcomes: list[TestOutcome], store: ArtifactStore) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_report(title, outcomes, store), encoding="utf-8")
