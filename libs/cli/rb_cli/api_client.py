"""The CLI's requests to the API: where it is (RB_API_URL, the running stack's RB_HOME/stack.json,
else http://RB_API_ADDR), the credentials (rb_cli.stack.auth_headers), and problem+json answers
as one-line errors."""

from __future__ import annotations

from typing import Any

from rb_cli.stack import auth_headers
from rb_common.errors import RbError
from rb_common.settings import Settings

UNREACHABLE_HINT = "start the stack with `rb up`, or set RB_API_URL to where the API runs"


def api_url(settings: Settings) -> str:
    return (settings.api_url or f"http://{settings.api_addr}").rstrip("/")


def unreachable(url: str, exc: Exception) -> RbError:
    return RbError(f"cannot reach the API at {url} ({exc or type(exc).__name__}): {UNREACHABLE_HINT}")


def problem_message(status: int, body: Any, text: str) -> str:
    """One line for an error answer: status, detail, and each validation error as `where: what`."""
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title") or ""
        errors = body.get("errors") or []
    else:
        detail, errors = text[:300], []
    parts = [f"{status}: {detail}".rstrip(": ")]
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict):
            where = ".".join(str(x) for x in error.get("loc") or error.get("path") or [] if x != "body")
            what = error.get("msg") or error.get("message") or error.get("detail") or ""
            parts.append(f"{where}: {what}" if where else str(what))
        else:
            parts.append(str(error))
    if status == 401:
        parts.append("set RB_API_KEY, or run `rb up`, which writes RB_HOME/admin.key")
    return "; ".join(p for p in parts if p)


def call(method: str, path: str, settings: Settings, **kwargs: Any) -> Any:
    """One API request (`path` under the API's base URL) with the CLI's credentials."""
    return request(method, f"{api_url(settings)}{path}", settings, **kwargs)


def request(method: str, url: str, settings: Settings, **kwargs: Any) -> Any:
    """One request to a full API URL with the CLI's credentials; an error answer is an RbError
    of one line, an unreachable API one that says what to do."""
    import httpx

    headers = {**auth_headers(settings), **kwargs.pop("headers", {})}
    try:
        response = httpx.request(method, url, timeout=30, headers=headers, **kwargs)
    except httpx.HTTPError as exc:
        raise unreachable(api_url(settings), exc) from None
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise RbError(problem_message(response.status_code, body, response.text))
    if response.status_code == 204 or not response.content:
        return {}
    return response.json()


RECENT_PAGES = 4  # a prefix is matched against this many pages of 500 recent executions


def resolve_remote_execution(ref: str, settings: Settings) -> str:
    """The execution an id or prefix names, as the API knows it; an ambiguous prefix is refused
    with its candidates."""
    from rb_cli.sources import ambiguous

    if not ref or not ref.replace("-", "").replace("_", "").isalnum():
        raise RbError(f"{ref!r} is not an execution id")
    try:
        call("GET", f"/api/v1/executions/{ref}", settings)
        return ref
    except RbError as exc:
        if not str(exc).startswith("404"):
            raise
    matches: list[str] = []
    for page in range(RECENT_PAGES):
        result = call("GET", "/api/v1/executions", settings, params={"limit": 500, "offset": page * 500})
        items = result.get("items") or []
        matches += [item["id"] for item in items if str(item.get("id", "")).startswith(ref)]
        if len(items) < 500:
            break
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RbError(f"no execution {ref!r} in the API at {api_url(settings)}")
    raise RbError(ambiguous(ref, sorted(matches)))
