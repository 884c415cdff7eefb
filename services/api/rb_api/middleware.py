"""Pure ASGI middleware (safe for streaming responses): request body limit and metrics."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rb_api.methods import allowed_methods
from rb_api.metrics import Metrics
from rb_common.problems import PROBLEM_JSON, problem_type

_UNMATCHED = "<unmatched>"


async def _send_problem(send: Send, scope: Scope, status: int, title: str, detail: str, slug: str) -> None:
    body = json.dumps(
        {
            "type": problem_type(slug),
            "title": title,
            "status": status,
            "detail": detail,
            "instance": scope.get("path"),
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Answer 413 for bodies over `max_bytes`; the body is read up front and replayed to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is larger than the limit of {self.max_bytes} bytes"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_problem(
                        send, scope, 400, "Bad Request", "invalid Content-Length", "invalid-body"
                    )
                    return
                if declared > self.max_bytes:
                    await _send_problem(send, scope, 413, "Content Too Large", too_large, "body-too-large")
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_problem(send, scope, 413, "Content Too Large", too_large, "body-too-large")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class MetricsMiddleware:
    """Count requests and time them by route template (`/api/v1/runbooks/{runbook_id}`)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        self.metrics.started()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", None) or _UNMATCHED
            self.metrics.observe(scope.get("method", "?"), path, status, time.perf_counter() - start)


# Browser safety: what a mutating route's body may be. A cross-site form or `text/plain` POST
# never reaches a route (and nothing is CORS-"simple" once Authorization is required anyway).
JSON_TYPES = frozenset({"application/json"})
RUNBOOK_TYPES = frozenset(
    {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "application/json"}
)
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SLACK_INTERACTIVITY = "/api/v1/slack/interactivity"  # Slack posts clicks as a form, signed


def accepted_types(method: str, path: str) -> frozenset[str] | None:
    """The media types a request body may have, or None where this does not decide (reads,
    trigger endpoints: each source parses its own formats)."""
    if method not in _MUTATING or path.startswith("/api/v1/triggers/"):
        return None
    if (method == "POST" and path.rstrip("/") == "/api/v1/runbooks") or (
        method == "PUT" and path.startswith("/api/v1/runbooks/") and path.count("/") == 4
    ):
        return RUNBOOK_TYPES
    if path == SLACK_INTERACTIVITY or (path.startswith("/api/v1/approvals/") and path.endswith("/email")):
        return frozenset({"application/x-www-form-urlencoded"})  # a form from Slack or the email page
    if path == "/graphql" or path.startswith("/api/"):
        return JSON_TYPES
    return None


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and value.strip() not in (b"0", b""):
            return True
        if name == b"transfer-encoding":
            return True
    return False


class ContentTypeMiddleware:
    """415 for a request body whose Content-Type is not one the route documents."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_body(scope):
            method, path, app = scope.get("method", ""), scope.get("path", ""), scope.get("app")
            accepted = accepted_types(method, path)
            if accepted is not None:
                content_type = ""
                for name, value in scope.get("headers", ()):
                    if name == b"content-type":
                        content_type = value.decode("latin-1")
                media = content_type.split(";", 1)[0].strip().lower()
                # A method the path does not have is the router's 405, whatever the body (looked
                # up only for a refused type: walking the routes took 3% of an execute's py-spy samples).
                if media not in accepted and (app is None or method in allowed_methods(app, path)):
                    await _send_problem(
                        send,
                        scope,
                        415,
                        "Unsupported Media Type",
                        f"Content-Type {media or '(none)'!r} is not accepted here; send "
                        + " or ".join(sorted(accepted)),
                        "unsupported-media-type",
                    )
                    return
        await self.app(scope, receive, send)
