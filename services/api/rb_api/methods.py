"""Which methods a path has: the `Allow` header of a 405 names all of them (Starlette's names
only the first route that matches the path), and the Content-Type check leaves a method the path
does not have to the router's 405."""

from __future__ import annotations

import re
from typing import Any

from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path

_TABLE = "rb_methods"


def _table(app: Any) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    state = app.state
    table: list[tuple[re.Pattern[str], frozenset[str]]] | None = getattr(state, _TABLE, None)
    if table is None:
        table = []
        for context in iter_route_contexts(app.routes):
            if context.methods:
                regex, _, _ = compile_path(str(context.path))
                table.append((regex, frozenset(context.methods)))
        setattr(state, _TABLE, table)
    return table


def allowed_methods(app: Any, path: str) -> frozenset[str]:
    """Every method some route of `app` answers on `path` (empty: no route has the path)."""
    found: set[str] = set()
    for regex, methods in _table(app):
        if regex.match(path):
            found |= methods
    return frozenset(found)
