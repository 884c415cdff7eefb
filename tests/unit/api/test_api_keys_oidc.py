"""API keys (created, shown once, stored hashed, expired and revoked keys refused, no key revokes
itself) and OIDC bearer tokens (signed with a key made here, JWKS served on loopback)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from api_auth_support import ADMIN, ADMIN_KEY, bearer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr
from sqlalchemy import Engine, update

from rb_api.app import create_app
from rb_api.deps import ApiOptions
from rb_common.bus import Bus
from rb_common.identity import hash_key
from rb_common.settings import Settings
from rb_store.tables import api_keys

KEYS = "/api/v1/keys"


async def test_a_created_key_works_is_shown_once_and_stored_hashed(
    client: httpx.AsyncClient, tmp_path: Path, engine: Engine
) -> None:
    r = await client.post(KEYS, json={"name": "ci", "roles": ["viewer", "operator"], "teams": ["payments"]})
    assert r.status_code == 201, r.text
    created = r.json()
    key = created["key"]
    assert key.startswith("rbk_") and len(key) == 4 + 43  # 256 bits, url-safe base64
    assert (created["name"], created["roles"], created["teams"]) == (
        "ci",
        ["operator", "viewer"],
        ["payments"],
    )
    assert created["created_by"] == "key:admin" and created["active"] and created["expires_at"] is None
    assert r.headers["cache-control"] == "no-store"

    mine = bearer(key)
    assert (await client.get("/api/v1/runbooks", headers=mine)).status_code == 200
    assert (await client.get(KEYS, headers=mine)).status_code == 403  # not an admin

    for _ in range(100):  # its use is noted off the request's path
        listed = (await client.get(KEYS)).json()["items"]
        [entry] = [k for k in listed if k["id"] == created["id"]]
        if entry["last_used_at"] is not None:
            break
        await asyncio.sleep(0.02)
    assert "key" not in entry and entry["prefix"] == key[:8]
    assert key not in json.dumps(listed)
    assert entry["last_used_at"] is not None  # it was used above

    engine.dispose()  # flush SQLite's WAL into the file
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("api.db*"))
    assert key.encode() not in stored, "the key itself is never stored"
    assert hash_key(key).encode() in stored
    assert ADMIN_KEY.encode() not in stored


async def test_revoked_and_expired_keys_are_refused(client: httpx.AsyncClient, engine: Engine) -> None:
    made = (await client.post(KEYS, json={"name": "temp", "roles": ["viewer"], "expires_in": 3600})).json()
    assert made["expires_at"] is not None
    key, key_id = made["key"], made["id"]
    assert (await client.get("/api/v1/runbooks", headers=bearer(key))).status_code == 200

    with engine.begin() as conn:  # an hour passes
        conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    # A change made behind the API's back (not through its routes) counts once the key it cached
    # is older than RB_AUTH_CACHE_SECONDS (rb_api.key_cache).
    deadline = time.monotonic() + Settings().auth_cache_seconds + 10
    expired = await client.get("/api/v1/runbooks", headers=bearer(key))
    while expired.status_code == 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        expired = await client.get("/api/v1/runbooks", headers=bearer(key))
    assert expired.status_code == 401 and "invalid_token" in expired.headers["www-authenticate"]

    other = (await client.post(KEYS, json={"name": "gone", "roles": ["admin"]})).json()
    assert (await client.get(KEYS, headers=bearer(other["key"]))).status_code == 200
    revoked = await client.delete(f"{KEYS}/{other['id']}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_by"] == "key:admin" and not revoked.json()["active"]
    assert (await client.get(KEYS, headers=bearer(other["key"]))).status_code == 401
    assert (await client.delete(f"{KEYS}/{other['id']}")).status_code == 200  # idempotent
    assert (await client.delete(f"{KEYS}/{'0' * 32}")).status_code == 404
    assert (await client.post(KEYS, json={"name": "x", "roles": ["root"]})).status_code == 422
    assert (await client.post(KEYS, json={"name": "x", "roles": []})).status_code == 422


async def test_a_key_cannot_revoke_itself(client: httpx.AsyncClient) -> None:
    fuzzer = (await client.post(KEYS, json={"name": "fuzzer", "roles": ["admin"]})).json()
    r = await client.delete(f"{KEYS}/{fuzzer['id']}", headers=bearer(fuzzer["key"]))
    assert r.status_code == 409 and "itself" in r.json()["detail"]
    assert (await client.get(KEYS, headers=bearer(fuzzer["key"]))).status_code == 200
    # ... nor the bootstrap key itself.
    admin_id = next(k["id"] for k in (await client.get(KEYS)).json()["items"] if k["name"] == "admin")
    assert (await client.delete(f"{KEYS}/{admin_id}")).status_code == 409
    # Another admin key may.
    assert (await client.delete(f"{KEYS}/{fuzzer['id']}")).status_code == 200


async def test_the_actor_is_the_identity_and_x_rb_actor_means_nothing(
    client: httpx.AsyncClient, make_key: Any, make_yaml: Any, runbook_id: str
) -> None:
    author = bearer(await make_key("alice", "author"))
    headers = {**author, "content-type": "application/yaml", "X-RB-Actor": "admin"}
    assert (
        await client.post("/api/v1/runbooks", content=make_yaml(runbook_id), headers=headers)
    ).status_code == 201
    versions = (await client.get(f"/api/v1/runbooks/{runbook_id}/versions")).json()
    assert versions["items"][0]["created_by"] == "key:alice"
    spec = (await client.get("/openapi.json")).json()
    assert "X-RB-Actor" not in json.dumps(spec)


async def test_the_bootstrap_key_is_seeded_once_and_stays_revoked(
    tmp_path: Path, engine: Engine, bus: Bus, api_options: ApiOptions
) -> None:
    settings = Settings(
        home=tmp_path / ".rb", nats_url="nats://memory.invalid:4222", bootstrap_admin_key=ADMIN_KEY
    )

    async def start() -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings, engine=engine, bus=bus, options=api_options)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://rb.test") as c,
        ):
            yield c

    async for c in start():
        keys = (await c.get(KEYS, headers=ADMIN)).json()["items"]
        assert [(k["name"], k["roles"], k["created_by"]) for k in keys] == [("admin", ["admin"], "bootstrap")]
        second = (await c.post(KEYS, json={"name": "second", "roles": ["admin"]}, headers=ADMIN)).json()
        assert (await c.delete(f"{KEYS}/{keys[0]['id']}", headers=bearer(second["key"]))).status_code == 200
    async for c in start():  # a restart seeds nothing new and does not bring the key back
        assert (await c.get(KEYS, headers=ADMIN)).status_code == 401
        names = [k["name"] for k in (await c.get(KEYS, headers=bearer(second["key"]))).json()["items"]]
        assert names == ["admin", "second"]

    short = settings.model_copy(update={"bootstrap_admin_key": SecretStr("too-short")})
    app = create_app(short, engine=engine, bus=bus, options=api_options)
    with pytest.raises(ValueError, match="at least 32"):
        async with app.router.lifespan_context(app):
            pass


# -- OIDC -----------------------------------------------------------------------------------------

ISSUER = "https://idp.rb.test/realms/ops"
AUDIENCE = "rb-api"


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


class Idp:
    """An RSA key made in the test and its JWKS, served on a loopback port."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "k1"
        numbers = self.key.public_key().public_numbers()
        self.jwks = {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": self.kid,
                    "use": "sig",
                    "alg": "RS256",
                    "n": _b64(numbers.n),
                    "e": _b64(numbers.e),
                }
            ]
        }
        self.public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.fetches = 0

    def token(
        self,
        *,
        key: Any = None,
        algorithm: str = "RS256",
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice@example.com",
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(
            body,
            key if key is not None else self.key,
            algorithm=algorithm,
            headers={"kid": self.kid, **(headers or {})},
        )


@pytest.fixture
def idp() -> Iterator[tuple[Idp, str]]:
    provider = Idp()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            provider.fetches += 1
            body = json.dumps(provider.jwks).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider, f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def oidc_client(
    tmp_path: Path, engine: Engine, bus: Bus, api_options: ApiOptions, idp: tuple[Idp, str]
) -> AsyncIterator[httpx.AsyncClient]:
    _, jwks_url = idp
    settings = Settings(
        home=tmp_path / ".rb",
        nats_url="nats://memory.invalid:4222",
        bootstrap_admin_key=ADMIN_KEY,
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks_url=jwks_url,
        oidc_teams_claim="groups",
    )
    app = create_app(settings, engine=engine, bus=bus, options=api_options)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://rb.test") as c,
    ):
        yield c


async def test_a_valid_token_with_roles_works(
    oidc_client: httpx.AsyncClient, idp: tuple[Idp, str], make_yaml: Any, runbook_id: str
) -> None:
    provider, _ = idp
    author = bearer(provider.token(roles=["author"], groups=["payments"]))
    text = make_yaml(runbook_id, extra="team: payments\n")
    r = await oidc_client.post(
        "/api/v1/runbooks", content=text, headers={**author, "content-type": "application/yaml"}
    )
    assert r.status_code == 201, r.text
    versions = (await oidc_client.get(f"/api/v1/runbooks/{runbook_id}/versions", headers=author)).json()
    assert versions["items"][0]["created_by"] == "oidc:alice@example.com"
    # roles as a space-separated string and from a nested claim name are read too
    viewer = bearer(provider.token(roles="viewer"))
    assert (await oidc_client.get("/api/v1/runbooks", headers=viewer)).status_code == 200
    assert (await oidc_client.get(f"/api/v1/runbooks/{runbook_id}", headers=viewer)).status_code == 404
    assert (await oidc_client.get("/api/v1/keys", headers=viewer)).status_code == 403
    no_roles = bearer(provider.token())
    assert (await oidc_client.get("/api/v1/runbooks", headers=no_roles)).status_code == 403
    assert provider.fetches == 1, "the JWKS is cached"
    # API keys keep working beside tokens.
    assert (await oidc_client.get("/api/v1/keys", headers=ADMIN)).status_code == 200


async def test_bad_tokens_are_refused(oidc_client: httpx.AsyncClient, idp: tuple[Idp, str]) -> None:
    provider, _ = idp
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    unsigned = (
        base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT", "kid": provider.kid}).encode())
        .rstrip(b"=")
        .decode()
        + "."
        + base64.urlsafe_b64encode(
            json.dumps(
                {"iss": ISSUER, "aud": AUDIENCE, "sub": "eve", "exp": now + 300, "roles": ["admin"]}
            ).encode()
        )
        .rstrip(b"=")
        .decode()
        + "."
    )
    # HS256 keyed with the public key (the classic confusion attack), signed by hand since
    # PyJWT refuses to use a PEM public key as an HMAC secret.
    import hashlib
    import hmac

    header = base64.urlsafe_b64encode(
        json.dumps({"alg": "HS256", "typ": "JWT", "kid": provider.kid}).encode()
    ).rstrip(b"=")
    payload = base64.urlsafe_b64encode(
        json.dumps(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "eve", "exp": now + 300, "roles": ["admin"]}
        ).encode()
    ).rstrip(b"=")
    signature = base64.urlsafe_b64encode(
        hmac.new(provider.public_pem, header + b"." + payload, hashlib.sha256).digest()
    ).rstrip(b"=")
    confused = (header + b"." + payload + b"." + signature).decode()
    cases = {
        "wrong issuer": provider.token(roles=["admin"], iss="https://evil.example"),
        "wrong audience": provider.token(roles=["admin"], aud="someone-else"),
        "expired": provider.token(roles=["admin"], exp=now - 3600, iat=now - 7200),
        "no expiry": provider.token(roles=["admin"], exp=None),
        "alg none": unsigned,
        "HS256 with the public key": confused,
        "signed by another key": provider.token(roles=["admin"], key=other_key),
        "unknown kid": provider.token(roles=["admin"], headers={"kid": "k2"}),
        "garbage": "eyJhbGciOi.not.atoken",
    }
    for name, token in cases.items():
        r = await oidc_client.get("/api/v1/keys", headers=bearer(token))
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert 'error="invalid_token"' in r.headers["www-authenticate"], name
    good = await oidc_client.get("/api/v1/keys", headers=bearer(provider.token(roles=["admin"])))
    assert good.status_code == 200


async def test_a_pinned_public_key_works_without_jwks(
    tmp_path: Path, engine: Engine, bus: Bus, api_options: ApiOptions
) -> None:
    provider = Idp()
    settings = Settings(
        home=tmp_path / ".rb",
        nats_url="nats://memory.invalid:4222",
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_public_key=provider.public_pem.decode(),
        oidc_roles_claim="realm_access.roles",
    )
    app = create_app(settings, engine=engine, bus=bus, options=api_options)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://rb.test") as c,
    ):
        token = provider.token(realm_access={"roles": ["viewer"]})
        assert (await c.get("/api/v1/runbooks", headers=bearer(token))).status_code == 200
        assert (await c.get("/metrics", headers=bearer(token))).status_code == 200
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/health/live")).status_code == 200
