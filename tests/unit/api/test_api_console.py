"""The web console's files at / (rb_api.console): anonymous, confined to the build directory,
with a strict Content-Security-Policy; /console/identity names the signed-in roles."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from api_app_support import app_client, app_settings
from api_auth_support import ADMIN_KEY, bearer
from sqlalchemy import Engine

from rb_common.bus import Bus
from rb_store.keys import create_key


def _build(directory: Path) -> Path:
    (directory / "assets").mkdir(parents=True)
    (directory / "index.html").write_text("<!doctype html><title>rb console</title>")
    (directory / "assets" / "index-abc123.js").write_text("console.log('rb')")
    (directory / "favicon.svg").write_text("<svg/>")
    (directory.parent / "secret.txt").write_text("not for the web")
    return directory


async def _client(tmp_path: Path, engine: Engine, bus: Bus, console: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app_settings(tmp_path, console_dir=console), engine, bus) as client:
        yield client


@pytest.fixture
async def web(tmp_path: Path, engine: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(tmp_path, engine, bus, _build(tmp_path / "web" / "dist")):
        yield client


async def test_the_page_and_its_assets_need_no_credentials(web: httpx.AsyncClient) -> None:
    page = await web.get("/")
    assert page.status_code == 200
    assert "<title>rb console</title>" in page.text
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
    asset = await web.get("/assets/index-abc123.js")
    assert asset.status_code == 200 and asset.text == "console.log('rb')"
    assert "immutable" in asset.headers["cache-control"]
    assert (await web.get("/favicon.svg")).status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/assets/../secret.txt", "/assets/..%2Fsecret.txt", "/assets/%2e%2e%2fsecret.txt", "/assets/.hidden", "/index.html"],
)
async def test_nothing_outside_the_build_is_served(web: httpx.AsyncClient, path: str) -> None:
    r = await web.get(path)
    assert r.status_code in (401, 404), (path, r.status_code)
    assert "not for the web" not in r.text


async def test_a_missing_asset_is_a_problem_404(web: httpx.AsyncClient) -> None:
    r = await web.get("/assets/nothing-here.js")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_without_a_build_the_page_says_how_to_make_one(tmp_path: Path, engine: Engine, bus: Bus) -> None:
    async for client in _client(tmp_path, engine, bus, tmp_path / "nowhere"):
        r = await client.get("/")
        assert r.status_code == 200 and "npm ci" in r.text


async def test_identity_names_the_granted_roles(web: httpx.AsyncClient, engine: Engine) -> None:
    assert (await web.get("/console/identity")).status_code == 401
    _, viewer = create_key(engine, name="console-viewer", roles=["viewer"], created_by="test")
    r = await web.get("/console/identity", headers=bearer(viewer))
    assert r.status_code == 200
    assert r.json() == {"actor": "key:console-viewer", "roles": ["viewer"]}
    admin = (await web.get("/console/identity", headers=bearer(ADMIN_KEY))).json()
    assert {"admin", "operator", "approver", "viewer"} <= set(admin["roles"])


async def test_the_console_is_not_in_the_openapi_document(web: httpx.AsyncClient) -> None:
    paths = (await web.get("/openapi.json")).json()["paths"]
    assert "/" not in paths and "/assets/{name}" not in paths and "/favicon.svg" not in paths
    assert "/console/identity" in paths
