"""Every service's log lines: JSON (one object a line) or text, with the execution and step a
line is about.

`bound(execution_id, step_id)` sets them for the block (a contextvar, so every line logged in it,
and in tasks started from it, carries them): the coordinator binds the execution it advances,
a worker the execution and step of the attempt it runs, the recorder and the notifier the
execution of the event they handle, the API and the scheduler the execution they trigger.
`configure(settings, service)` installs the handler once, from the composition root.

JSON lines (RB_LOG_FORMAT=json, the default) hold `time`, `level`, `service`, `logger`,
`message`, `execution_id` and `step_id` (null outside an execution or step), `exc_info` when
there is one, and `trace_id` / `span_id` when tracing is on. RB_LOG_FORMAT=text gives the
classic line for humans, the ids in brackets at its end. A `MaskingFilter` (secrets) on the
handler masks the message and the exception text before either formatter sees them.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from rb_common import tracing
from rb_common.settings import Settings

_execution: ContextVar[str | None] = ContextVar("rb_log_execution_id", default=None)
_step: ContextVar[str | None] = ContextVar("rb_log_step_id", default=None)


class bound:
    """Log lines inside the block name this execution (and step). A class rather than a
    generator: it runs twice per step on the hot path."""

    __slots__ = ("_tokens", "execution_id", "step_id")

    def __init__(self, execution_id: str | None, step_id: str | None = None) -> None:
        self.execution_id = execution_id
        self.step_id = step_id

    def __enter__(self) -> None:
        self._tokens = (_execution.set(self.execution_id), _step.set(self.step_id))

    def __exit__(self, *_: object) -> None:
        execution_token, step_token = self._tokens
        _step.reset(step_token)
        _execution.reset(execution_token)


def current() -> tuple[str | None, str | None]:
    return _execution.get(), _step.get()


class ContextFilter(logging.Filter):
    """Puts the bound execution and step ids (and the current trace and span ids, when tracing
    is on) on every record the handler passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.execution_id = _execution.get()
        record.step_id = _step.get()
        ids = tracing.current_ids()
        if ids is not None:
            record.trace_id, record.span_id = ids
        return True


class JsonLines(JsonFormatter):
    """python-json-logger's formatter, keeping an exception text a filter has already written
    (masked) instead of formatting the exception again."""

    def formatException(self, ei: Any) -> str:
        text: str | None = getattr(self, "_exc_text", None)
        if text:
            return text
        formatted = super().formatException(ei)
        return formatted if isinstance(formatted, str) else "\n".join(formatted)

    def format(self, record: logging.LogRecord) -> str:
        self._exc_text = record.exc_text
        try:
            return super().format(record)
        finally:
            self._exc_text = None


class TextLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        execution_id = getattr(record, "execution_id", None)
        if execution_id is None:
            return line
        step_id = getattr(record, "step_id", None)
        where = f"execution={execution_id}" + (f" step={step_id}" if step_id else "")
        first, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{first} [{where}]{newline}{rest}"


def formatter(log_format: str, service: str) -> logging.Formatter:
    if log_format == "text":
        return TextLines(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
    return JsonLines(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(execution_id)s %(step_id)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        static_fields={"service": service},
        timestamp=False,
    )


def configure(settings: Settings, service: str) -> logging.Handler:
    """The process's log handler (stderr), in RB_LOG_FORMAT, at RB_LOG_LEVEL."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(formatter(settings.log_format, service))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
    logging.captureWarnings(True)  # Python's warnings become log lines too, not raw text
    return handler
