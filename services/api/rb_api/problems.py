"""RFC 9457 problem details: every error the API answers is `application/problem+json`.

`ProblemError` is what the API's own code raises; the handlers installed by `install_handlers`
turn it, HTTP errors, request validation errors, rb's own `RbError`s and anything unexpected into
`{type, title, status, detail, instance, errors?}`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from rb_api.methods import allowed_methods
from rb_api.problem_docs import problems_for
from rb_common.errors import RbError, RunbookLoadError
from rb_common.params import ParamsError
from rb_common.problems import PROBLEM_JSON, phrase, problem_body

log = logging.getLogger("rb_api")


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entries of a route's problem statuses (problem+json with the
    Problem schema; `rb_api.problem_docs.problems_for`)."""
    return problems_for(*codes)


class ProblemError(Exception):
    """An error answered as a problem document; `slug` names its type (urn:rb:problem:<slug>)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        errors: list[Any] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.title = title or phrase(status)
        self.errors = errors
        self.headers = headers
        self.extra = extra or {}


def not_found(what: str, slug: str = "not-found") -> ProblemError:
    return ProblemError(404, f"{what} does not exist", slug=slug, title="Not found")


def problem_response(
    request: Request | None,
    status: int,
    detail: str | None = None,
    *,
    slug: str | None = None,
    title: str | None = None,
    errors: list[Any] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body = problem_body(
        status,
        detail,
        slug=slug,
        title=title,
        instance=request.url.path if request is not None else None,
        errors=errors,
        extra=extra,
    )
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append(
            {"field": ".".join(loc), "message": str(err.get("msg", "invalid")), "type": err.get("type")}
        )
    return out


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(
        request,
        exc.status,
        exc.detail,
        slug=exc.slug,
        title=exc.title,
        errors=exc.errors,
        headers=exc.headers,
        extra=exc.extra,
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.status_code == 404 and detail in (None, "Not Found"):
        detail = f"no resource at {request.url.path}"
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
        allowed = allowed_methods(request.app, request.url.path)
        if allowed:
            headers = {**(headers or {}), "Allow": ", ".join(sorted(allowed))}
    return problem_response(request, exc.status_code, detail, headers=headers)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    bad_json = any(e.get("type") == "json_invalid" for e in errors)
    if bad_json:
        return problem_response(
            request,
            400,
            "the request body is not valid JSON",
            slug="invalid-body",
            title="Malformed request body",
            errors=errors,
        )
    shown = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return problem_response(
        request,
        422,
        f"invalid request: {shown}",
        slug="invalid-request",
        title="Invalid request",
        errors=errors,
    )


async def _on_rb_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, ParamsError):
        return problem_response(
            request,
            422,
            str(exc),
            slug="invalid-params",
            title="Invalid parameters",
            errors=exc.problems,
        )
    if isinstance(exc, RunbookLoadError):
        return problem_response(
            request,
            422,
            exc.message,
            slug="invalid-runbook",
            title="Invalid runbook",
            errors=[{"step": None, "message": exc.message, "line": exc.line}],
        )
    return problem_response(request, 422, str(exc), slug="rb-error", title="Request cannot be processed")


async def _on_database_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return problem_response(
        request,
        503,
        f"the database is unavailable: {first}",
        slug="database-unavailable",
        title="Database unavailable",
        headers={"Retry-After": "1"},
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request, 500, "an unexpected error occurred; it has been logged", slug="internal-error"
    )


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(RbError, _on_rb_error)
    for db_error in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(db_error, _on_database_down)
    app.add_exception_handler(Exception, _on_unexpected)
