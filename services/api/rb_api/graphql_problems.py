"""GraphQL's request errors as problems: strawberry answers a request it cannot take (no query,
an unsupported Content-Type, a mutation over GET, malformed JSON) with a text/plain 4xx; this
middleware answers the same status as application/problem+json, like every other error of the
API. GraphQL's own errors (HTTP 200, `errors`) pass unchanged.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rb_api.middleware import _send_problem
from rb_common.problems import phrase

GRAPHQL_PATH = "/graphql"


def _plain_text(message: Message) -> bool:
    for name, value in message.get("headers", ()):
        if name.lower() == b"content-type":
            return bytes(value).lower().startswith(b"text/plain")
    return False


class GraphQLProblemMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != GRAPHQL_PATH:
            await self.app(scope, receive, send)
            return
        held: Message | None = None  # a text/plain 4xx start, until its body is complete
        body = b""

        async def rewrite(message: Message) -> None:
            nonlocal held, body
            if message["type"] == "http.response.start":
                if 400 <= message["status"] < 500 and _plain_text(message):
                    held = message
                    return
                await send(message)
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            body += message.get("body", b"")
            if message.get("more_body", False):
                return
            status = held["status"]
            detail = body.decode("utf-8", errors="replace").strip() or "the GraphQL request is invalid"
            await _send_problem(send, scope, status, phrase(status), detail, "invalid-graphql-request")

        await self.app(scope, receive, rewrite)
