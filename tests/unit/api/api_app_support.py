"""The real API app (create_app + its lifespan) behind httpx's ASGI transport, for the fixtures
that need their own settings: one way to build it, shared by conftest and the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from api_auth_support import ADMIN_KEY
from sqlalchemy import Engine

from rb_api.app import create_app
from rb_api.deps import ApiOptions
from rb_common.bus import Bus
from rb_common.settings import Settings


def app_settings(tmp_path: Path, **fields: Any) -> Settings:
    """Settings of a hermetic API: its home under tmp_path, no reachable NATS, the bootstrap
    admin key (unless `fields` say otherwise)."""
    values: dict[str, Any] = {
        "home": tmp_path / ".rb",
        "nats_url": "nats://memory.invalid:4222",
        "bootstrap_admin_key": ADMIN_KEY,
    }
    return Settings(**{**values, **fields})


@asynccontextmanager
async def app_client(
    settings: Settings,
    engine: Engine,
    bus: Bus,
    options: ApiOptions | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, engine=engine, bus=bus, options=options or ApiOptions())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://rb.test", timeout=20, headers=headers
        ) as client,
    ):
        yield client
