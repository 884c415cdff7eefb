"""Errors that carry where they happened, so the CLI and API can say it plainly."""

from __future__ import annotations


class RbError(Exception):
    """Base for every error rb reports to a user instead of a traceback."""


class RunbookLoadError(RbError):
    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


class ExpressionError(RbError):
    """An expression that cannot be parsed or evaluated."""


class FixtureError(RbError):
    """A fixture file that is missing or malformed."""
