"""Both reports of an `rb test` run, as the options asked."""

from __future__ import annotations

from pathlib import Path

from rb_common.errors import RbError
from rb_common.settings import Settings
from rb_engine.artifacts import artifact_store
from rb_engine.reports.html import write_html
from rb_engine.reports.junit import write_junit
from rb_engine.testing import TestOutcome


def write_reports(
    target: str, outcomes: list[TestOutcome], settings: Settings, *, junit: Path | None, html: Path | None
) -> None:
    try:
        if junit is not None:
            write_junit(junit, f"rb test {target}", outcomes)
        if html is not None:
            write_html(html, target, outcomes, artifact_store(settings))
    except OSError as exc:
        raise RbError(f"cannot write the report: {exc.strerror or exc}: {exc.filename or ''}") from None
