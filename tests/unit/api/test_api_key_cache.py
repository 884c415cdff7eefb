"""The API's cache of looked-up keys (rb_api.key_cache): revocations through the process are
immediate, expiry is exact, and another API process on the same database refuses a revoked key
within RB_AUTH_CACHE_SECONDS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from api_app_support import app_client, app_settings
from api_auth_support import ADMIN, bearer
from sqlalchemy import Engine, event

from rb_api.deps import ApiOptions
from rb_api.key_cache import KeyCache
from rb_common.bus import Bus
from rb_store.keys import StoredKey

KEYS = "/api/v1/keys"
READ = "/api/v1/runbooks"


@asynccontextmanager
async def api(
    tmp_path: Path, engine: Engine, bus: Bus, options: ApiOptions, cache_seconds: float
) -> AsyncIterator[httpx.AsyncClient]:
    """One API process (its own app and caches) on the shared database."""
    settings = app_settings(tmp_path, auth_cache_seconds=cache_seconds)
    async with app_client(settings, engine, bus, options, headers=ADMIN) as client:
        yield client


async def test_a_key_revoked_through_this_api_is_refused_at_once(
    tmp_path: Path, engine: Engine, bus: Bus, api_options: ApiOptions
) -> None:
    async with api(tmp_path, engine, bus, api_options, cache_seconds=600) as client:
        made = (await client.post(KEYS, json={"name": "soon-gone", "roles": ["viewer"]})).json()
        for _ in range(3):  # looked up once, then from the cache
            assert (await client.get(READ, headers=bearer(made["key"]))).status_code == 200
        assert (await client.delete(f"{KEYS}/{made['id']}")).status_code == 200
        refused = await client.get(READ, headers=bearer(made["key"]))
        assert refused.status_code == 401 and "invalid_token" in refused.headers["www-authenticate"]


def test_a_cached_key_expires_on_time() -> None:
    # Keys live at least 60 s through the API, so the cache is driven directly here.
    cache = KeyCache(600)
    now = datetime.now(UTC)
    stored = StoredKey(
        id="k1", name="brief", prefix="rbk_brie", roles=["viewer"], teams=[], created_by="key:admin",
        created_at=now, expires_at=now + timedelta(seconds=0.5), revoked_at=None, revoked_by=None,
        last_used_at=None,
    )  # fmt: skip
    cache.put("rbk_brief-key", stored, cache.generation())
    assert cache.get("rbk_brief-key") == stored
    assert cache.get("rbk_other-key") is None
    time.sleep(0.6)
    assert cache.get("rbk_brief-key") is None


def test_a_lookup_that_began_before_a_revocation_is_not_kept() -> None:
    cache = KeyCache(600)
    now = datetime.now(UTC)
    stored = StoredKey(
        id="k2", name="racing", prefix="rbk_raci", roles=["viewer"], teams=[], created_by="key:admin",
        created_at=now, expires_at=None, revoked_at=None, revoked_by=None, last_used_at=None,
    )  # fmt: skip
    began = cache.generation()
    cache.clear()  # a revocation answered while the lookup read the row as it was before
    cache.put("rbk_racing-key", stored, began)
    assert cache.get("rbk_racing-key") is None


async def test_another_api_process_refuses_a_revoked_key_within_the_cache_time(
    tmp_path: Path, engine: Engine, bus: Bus, api_options: ApiOptions
) -> None:
    async with (
        api(tmp_path, engine, bus, api_options, cache_seconds=1.0) as first,
        api(tmp_path, engine, bus, api_options, cache_seconds=1.0) as second,
    ):
        made = (await first.post(KEYS, json={"name": "shared", "roles": ["viewer"]})).json()
        assert (await second.get(READ, headers=bearer(made["key"]))).status_code == 200  # cached there
        assert (await first.delete(f"{KEYS}/{made['id']}")).status_code == 200
        revoked_at = time.monotonic()
        while (await second.get(READ, headers=bearer(made["key"]))).status_code == 200:
            assert time.monotonic() - revoked_at < 1.0 + 10, "the other process kept the revoked key"
            await asyncio.sleep(0.05)
        assert (await second.get(READ, headers=bearer(made["key"]))).status_code == 401


async def test_without_the_cache_every_request_reads_the_key(
    tmp_path: Path, engine: Engine, bus: Bus, api_options: ApiOptions
) -> None:
    async with (
        api(tmp_path, engine, bus, api_options, cache_seconds=0) as first,
        api(tmp_path, engine, bus, api_options, cache_seconds=0) as second,
    ):
        made = (await first.post(KEYS, json={"name": "uncached", "roles": ["viewer"]})).json()
        assert (await second.get(READ, headers=bearer(made["key"]))).status_code == 200
        assert (await first.delete(f"{KEYS}/{made['id']}")).status_code == 200
        assert (await second.get(READ, headers=bearer(made["key"]))).status_code == 401


async def test_a_burst_with_a_key_not_cached_reads_it_once(
    tmp_path: Path, engine: Engine, bus: Bus, api_options: ApiOptions
) -> None:
    """Requests arriving together with a key the process has not looked up (the start of a load
    test, or every request in flight when the cached entry expires) share one lookup."""
    async with api(tmp_path, engine, bus, api_options, cache_seconds=600) as client:
        made = (await client.post(KEYS, json={"name": "burst", "roles": ["viewer"]})).json()
        reads: list[str] = []

        def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if "FROM api_keys" in statement and "key_hash" in statement:
                reads.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        try:
            answers = await asyncio.gather(*(client.get(READ, headers=bearer(made["key"])) for _ in range(20)))
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert [a.status_code for a in answers] == [200] * 20
        assert len(reads) == 1, reads
