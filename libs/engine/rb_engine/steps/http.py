"""`data_fetch` / `http`: one HTTP request, its body as the raw result.

The request helpers here are shared by every step type that talks HTTP (api_call,
metrics_publish) so auth, idempotency and failure classification behave the same everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from rb_common import tracing
from rb_common.step_specs import SPECS, StepSpec
from rb_engine.egress import EgressPolicy, EgressRefused, EgressTransport, redact_url
from rb_engine.steps.base import SpecValidated, StepContext, StepFailed

# The runner enforces step timeouts by cancelling the coroutine; this only stops a dead peer
# from holding a connection forever when a step has no timeout of its own.
HTTP_TIMEOUT = httpx.Timeout(300.0, connect=30.0)
MAX_REDIRECTS = 10  # each one checked against the egress policy again
_BODY_EXCERPT = 200
_NO_BODY: Any = object()


def _status_expected(status: int, expect_status: int | list[int] | None) -> bool:
    if expect_status is None:
        return 200 <= status < 300
    if isinstance(expect_status, int):
        return status == expect_status
    return status in expect_status


def _query_params(params: Mapping[str, Any]) -> dict[str, Any]:
    # httpx takes scalars and lists of scalars; nested values go as JSON text rather than crash.
    def scalar(value: Any) -> Any:
        return value if value is None or isinstance(value, str | int | float) else json.dumps(value)

    return {
        key: [scalar(v) for v in value] if isinstance(value, list) else scalar(value)
        for key, value in params.items()
    }


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host
    except (httpx.InvalidURL, TypeError, ValueError):
        return ""


def _excerpt(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    return text[:_BODY_EXCERPT] + ("..." if len(text) > _BODY_EXCERPT else "")


async def send_request(
    ctx: StepContext,
    *,
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    json_body: Any = _NO_BODY,
    content: bytes | str | None = None,
    auth_token: str | None = None,
    expect_status: int | list[int] | None = None,
) -> httpx.Response:
    """Send one request; unexpected statuses and transport errors become StepFailed.

    5xx, 429 and connection problems may go away on retry; other 4xx will not.
    Status and response headers go into `ctx.meta` whatever the outcome.
    """
    request_headers = httpx.Headers(dict(headers or {}))
    if auth_token:
        request_headers["Authorization"] = f"Bearer {auth_token}"
    # Set last so a runbook cannot accidentally defeat the receiver's de-duplication.
    request_headers["Idempotency-Key"] = ctx.idempotency_key
    kwargs: dict[str, Any] = {"headers": request_headers}
    if params:
        kwargs["params"] = _query_params(params)
    if json_body is not _NO_BODY:
        kwargs["json"] = json_body
    elif content is not None:
        kwargs["content"] = content
    # Every hop (redirects too) goes through the egress policy; an injected transport (tests,
    # the fixture runner) replaces the network and is used as it is.
    transport = ctx.http_transport or EgressTransport(
        EgressPolicy.from_settings(ctx.settings), ctx.resolve_host
    )
    shown = redact_url(url)  # errors are recorded and logged: no query strings, no credentials
    try:
        async with httpx.AsyncClient(
            transport=transport,
            timeout=HTTP_TIMEOUT,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            trust_env=False,
        ) as client:
            # The outbound call's span (a child of the step attempt's) and its context in the
            # request's `traceparent`; attributes name the method and host, never the path or
            # query (they may hold secrets).
            with tracing.span(
                method.upper(),
                kind="client",
                attributes={"http.request.method": method.upper(), "server.address": _host(url)},
            ):
                tracing.inject(kwargs["headers"])
                response = await client.request(method.upper(), url, **kwargs)
    except EgressRefused as exc:
        redirected = f" (redirected from {shown})" if exc.url != shown else ""
        raise StepFailed(exc.message + redirected, retryable=False) from None
    except httpx.InvalidURL as exc:
        raise StepFailed(f"invalid URL {shown!r}: {exc}", retryable=False) from exc
    except httpx.UnsupportedProtocol as exc:
        raise StepFailed(f"unsupported URL {shown!r}: {exc}", retryable=False) from exc
    except httpx.TransportError as exc:
        detail = str(exc) or type(exc).__name__
        raise StepFailed(f"HTTP request to {shown} failed: {detail}", retryable=True) from exc
    except httpx.HTTPError as exc:  # too many redirects, undecodable body: retrying won't help
        detail = str(exc) or type(exc).__name__
        raise StepFailed(f"HTTP request to {shown} failed: {detail}", retryable=False) from exc
    ctx.meta["status"] = response.status_code
    ctx.meta["headers"] = dict(response.headers)
    if not _status_expected(response.status_code, expect_status):
        status = response.status_code
        raise StepFailed(
            f"HTTP {status} from {shown}: {_excerpt(response)}",
            retryable=status >= 500 or status == 429,
        )
    return response


def response_body(response: httpx.Response) -> Any:
    """The body as JSON when it parses, else as text, so JSONPath outputs work on APIs."""
    try:
        return response.json()
    except ValueError:
        return response.text


class HttpStep(SpecValidated):
    """Serves both `data_fetch` and `http`: same behaviour, two names runbooks already use."""

    def __init__(self, name: str = "http") -> None:
        if name not in ("http", "data_fetch"):
            raise ValueError(f"HttpStep serves 'http' or 'data_fetch', not {name!r}")
        self.spec: StepSpec = SPECS[name]

    async def run(self, inputs: dict[str, Any], ctx: StepContext) -> Any:
        url = inputs.get("source_url") or inputs.get("url")
        if not isinstance(url, str) or not url:
            raise StepFailed("no URL: set 'source_url' (or 'url')", retryable=False)
        body = inputs.get("body")
        response = await send_request(
            ctx,
            method=inputs.get("method") or "GET",
            url=url,
            headers=inputs.get("headers"),
            params=inputs.get("params"),
            json_body=_NO_BODY if body is None else body,
            auth_token=inputs.get("auth_token"),
            expect_status=inputs.get("expect_status"),
        )
        return response_body(response)
