"""Malformed input is refused at the door, as 400 problem+json, before any route parses it:

- a text body (JSON, YAML, GraphQL) that is not UTF-8, or that holds a lone surrogate escape
  (`"\\ud800"` in JSON or YAML): Python would carry it as a str that no encoder can write
  again, so one such runbook name or parameter used to break every later read or publish;
- JSON or YAML nested deeper than MAX_NESTING (`[[[[...]]]]`: the parsers recurse);
- a GraphQL document whose selections (fragments followed) are deeper than MAX_GRAPHQL_DEPTH,
  on POST bodies and GET `?query=` alike.

Runs inside the body limit (the body is at most `max_body_bytes`, already read) and replays the
body to the app unchanged.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs

from graphql import GraphQLError, parse
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rb_api.middleware import _send_problem

MAX_NESTING = 64
MAX_GRAPHQL_DEPTH = 12
MAX_GRAPHQL_TOKENS = 20_000
GRAPHQL_PATH = "/graphql"

_TEXT_TYPES = ("json", "yaml", "text/", "graphql")
# A backslash escape: \uXXXX, \UXXXXXXXX (YAML), or an escaped backslash (consumed, so that
# `\\ud800` is the text "\ud800", not an escape).
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|.)", re.DOTALL)
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class Refused(Exception):
    def __init__(self, detail: str, slug: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.slug = slug


def lone_surrogate(text: str) -> bool:
    """Whether `text` holds a surrogate escape that is not half of a valid \\uD8xx\\uDCxx pair."""
    if "\\u" not in text and "\\U" not in text:
        return False
    high_end: int | None = None  # where an unpaired high surrogate escape ended
    for match in _ESCAPE.finditer(text):
        short, long = match.group(1), match.group(2)
        point = int(short or long, 16) if (short or long) else None
        if high_end is not None:
            if point is not None and short and 0xDC00 <= point <= 0xDFFF and match.start() == high_end:
                high_end = None
                continue
            return True
        if point is None:
            continue
        if short and 0xD800 <= point <= 0xDBFF:
            high_end = match.end()
        elif 0xD800 <= point <= 0xDFFF:
            return True
    return high_end is not None


def nesting(text: str, limit: int) -> int:
    """How deep `[`/`{` nest in `text` (outside double-quoted strings), stopping past `limit`."""
    if text.count("[") + text.count("{") <= limit:
        return 0
    depth = deepest = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group(0)
        if token in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif token in "]}":
            depth -= 1
    return deepest


def graphql_depth(document: DocumentNode, limit: int) -> int:
    """The deepest field path of any operation, fragments followed (stops past `limit`)."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}

    def depth(selections: SelectionSetNode | None, level: int, seen: frozenset[str]) -> int:
        if selections is None or level > limit:
            return level
        deepest = level
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                if selection.selection_set is not None:
                    deepest = max(deepest, depth(selection.selection_set, level + 1, seen))
            elif isinstance(selection, InlineFragmentNode):
                deepest = max(deepest, depth(selection.selection_set, level, seen))
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is not None and name not in seen:
                    deepest = max(deepest, depth(fragment.selection_set, level, seen | {name}))
            if deepest > limit:
                return deepest
        return deepest

    return max(
        (
            depth(d.selection_set, 1, frozenset())
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
        ),
        default=0,
    )


def check_graphql_query(query: Any) -> None:
    if not isinstance(query, str):
        return
    if _has_surrogate(query):
        raise Refused("the GraphQL document holds a lone surrogate", "malformed-unicode")
    try:
        document = parse(query, max_tokens=MAX_GRAPHQL_TOKENS)
    except GraphQLError as exc:
        if "nested too deeply" in exc.message or "token limit" in exc.message:
            raise Refused(
                f"the GraphQL document is too large or too deep: {exc.message}", "graphql-too-deep"
            ) from None
        return  # any other syntax error: strawberry answers it as GraphQL errors
    except RecursionError:
        raise Refused("the GraphQL document is nested too deeply", "graphql-too-deep") from None
    if graphql_depth(document, MAX_GRAPHQL_DEPTH) > MAX_GRAPHQL_DEPTH:
        raise Refused(
            f"the GraphQL query is nested deeper than {MAX_GRAPHQL_DEPTH} levels", "graphql-too-deep"
        )


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def check_body(body: bytes, content_type: str, path: str) -> None:
    media = content_type.split(";", 1)[0].strip().lower()
    if not body or not any(kind in media for kind in _TEXT_TYPES):
        return
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("the request body is not valid UTF-8", "invalid-body") from None
    if lone_surrogate(text):
        raise Refused(
            "the request body holds a lone surrogate escape (e.g. \\ud800): not valid Unicode text",
            "malformed-unicode",
        )
    if nesting(text, MAX_NESTING) > MAX_NESTING:
        raise Refused(f"the request body is nested deeper than {MAX_NESTING} levels", "too-deep")
    if path == GRAPHQL_PATH and "json" in media:
        try:
            document = json.loads(text)
        except ValueError:
            return  # strawberry answers malformed JSON itself
        if isinstance(document, dict):
            check_graphql_query(document.get("query"))


class InputGuardMiddleware:
    """400 problem+json for malformed Unicode, over-deep nesting and over-deep GraphQL."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        try:
            if path == GRAPHQL_PATH and scope.get("method") == "GET":
                query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("query")
                if query:
                    check_graphql_query(query[0])
        except Refused as exc:
            await _send_problem(send, scope, 400, "Bad Request", exc.detail, exc.slug)
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        content_type = ""
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                content_type = value.decode("latin-1")
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            check_body(body, content_type, path)
        except Refused as exc:
            await _send_problem(send, scope, 400, "Bad Request", exc.detail, exc.slug)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
