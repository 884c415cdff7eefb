"""The web console (web/, issue 17): its built files at `/`, beside the API.

`GET /` answers web/dist/index.html and `GET /assets/{name}` the hashed bundles Vite writes
next to it; both are anonymous (the files hold no data: every call the console makes goes to
`/api/v1` with the API key the user signed in with, as `Authorization: Bearer`) and outside
the OpenAPI document. The console routes inside the page with the URL's fragment (`#/runbooks`),
so no other path is ever served here. `GET /console/identity` tells the console who signed in
and which roles that grants, so it offers only the buttons the API would accept.

Where the files are: RB_CONSOLE_DIR, else web/dist of the source tree. Without a build, `/`
answers a short page that says how to build it (`./rb up` and `./scripts/test` build it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response

from rb_api.auth import Viewer
from rb_api.console_paths import ASSET_NAME
from rb_api.problems import ProblemError, problem_responses
from rb_common.identity import granted
from rb_common.settings import Settings

SOURCE_BUILD = Path(__file__).resolve().parents[3] / "web" / "dist"

# The page runs only its own scripts and talks only to its own origin; React Flow positions
# nodes with inline styles (style attributes), hence 'unsafe-inline' for styles alone.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>rb console</title>
<p>The rb web console is not built. Build it with <code>./rb up</code>, or by hand:
<code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code> (or point RB_CONSOLE_DIR at a build).
The API itself is under <a href="/docs">/docs</a>.</p>
"""


def console_dir(settings: Settings) -> Path:
    return settings.console_dir or SOURCE_BUILD


def console_router(settings: Settings) -> APIRouter:
    directory = console_dir(settings)
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def index() -> Response:
        page = directory / "index.html"
        if not page.is_file():
            return HTMLResponse(NOT_BUILT, headers=SECURITY_HEADERS)
        return FileResponse(page, media_type="text/html", headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    @router.get("/favicon.svg", include_in_schema=False)
    async def favicon() -> Response:
        return _file(directory / "favicon.svg", "no-cache")

    @router.get("/assets/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if ASSET_NAME.match(name) is None or ".." in name:
            raise ProblemError(404, "no such file", slug="not-found", title="Not found")
        # Vite names every bundle by its content hash: a name never changes what it holds.
        return _file(directory / "assets" / name, "public, max-age=31536000, immutable")

    @router.get(
        "/console/identity",
        summary="Who signed in: the actor and every role the credentials grant (for the web console)",
        tags=["console"],
        responses=problem_responses(401, 403),
    )
    async def identity(who: Viewer) -> dict[str, Any]:
        return {"actor": who.actor, "roles": sorted(r.value for r in granted(who.roles))}

    return router


def _file(path: Path, cache: str) -> Response:
    if not path.is_file():
        raise ProblemError(404, "no such file", slug="not-found", title="Not found")
    return FileResponse(path, headers={**SECURITY_HEADERS, "Cache-Control": cache})


def install_console(app: FastAPI, settings: Settings) -> None:
    app.include_router(console_router(settings))
