"""OIDC / JWT bearer tokens: signature (JWKS or a PEM key, algorithms pinned), issuer, audience
and expiry checked; roles and teams from configurable claims.

The JWKS is fetched with httpx and cached for RB_OIDC_JWKS_CACHE_SECONDS; a token naming a key
id the cache does not know refetches it (at most once every few seconds, so unknown kids cannot
make the API hammer the identity provider).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import jwt
from jwt.algorithms import get_default_algorithms

from rb_common.identity import Identity, known_roles
from rb_common.settings import Settings

log = logging.getLogger("rb_api")

# Symmetric and unsigned algorithms are never accepted, whatever RB_OIDC_ALGORITHMS says: a
# public key must not become an HMAC secret.
_REFUSED = {"none", "HS256", "HS384", "HS512"}
_REFETCH_AFTER = 5.0


class InvalidToken(Exception):
    """The token is not acceptable; the message says why (logged, not sent)."""


def _claim_values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.replace(",", " ").split() if v]
    if isinstance(value, list | tuple):
        return [str(v) for v in value if isinstance(v, str | int)]
    return []


def _claim(claims: dict[str, Any], name: str) -> Any:
    """A claim by name; dotted names reach into objects (`realm_access.roles`)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


class OidcVerifier:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        algorithms = [a for a in settings.oidc_algorithm_list if a not in _REFUSED]
        supported = get_default_algorithms()
        self.algorithms = [a for a in algorithms if a in supported]
        if not self.algorithms:
            raise ValueError(
                f"RB_OIDC_ALGORITHMS={settings.oidc_algorithms!r} names no acceptable asymmetric algorithm"
            )
        self._static: Any = None
        if settings.oidc_public_key:
            pem = settings.oidc_public_key.encode()
            self._static = {a: supported[a].prepare_key(pem) for a in self.algorithms}
        self._jwks: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def _fetch_jwks(self) -> None:
        url = self.settings.oidc_jwks_url
        assert url is not None
        async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as client:
            response = await client.get(url)
        response.raise_for_status()
        keys: dict[str, Any] = {}
        for jwk in response.json().get("keys", []):
            if jwk.get("use", "sig") != "sig":
                continue
            try:
                keys[str(jwk.get("kid", ""))] = (jwt.PyJWK(jwk), jwk.get("alg"))
            except jwt.PyJWTError as exc:
                log.warning("skipping a JWKS key (%s): %s", jwk.get("kid"), exc)
        self._jwks = keys
        self._fetched_at = time.monotonic()

    async def _jwks_key(self, kid: str, alg: str) -> Any:
        age = time.monotonic() - self._fetched_at
        stale = not self._jwks or age > self.settings.oidc_jwks_cache_seconds
        if stale or (kid not in self._jwks and age > _REFETCH_AFTER):
            async with self._lock:
                age = time.monotonic() - self._fetched_at
                if (
                    not self._jwks
                    or age > self.settings.oidc_jwks_cache_seconds
                    or (kid not in self._jwks and age > _REFETCH_AFTER)
                ):
                    try:
                        await self._fetch_jwks()
                    except (httpx.HTTPError, ValueError) as exc:
                        log.warning("cannot fetch the JWKS from %s: %s", self.settings.oidc_jwks_url, exc)
        found = self._jwks.get(kid)
        if found is None and not kid and len(self._jwks) == 1:
            found = next(iter(self._jwks.values()))
        if found is None:
            raise InvalidToken(f"no key {kid!r} in the JWKS")
        jwk, pinned = found
        if pinned is not None and pinned != alg:
            raise InvalidToken(f"key {kid!r} is for {pinned}, not {alg}")
        return jwk.key

    async def verify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from None
        alg = str(header.get("alg", ""))
        if alg not in self.algorithms:
            raise InvalidToken(f"algorithm {alg!r} is not accepted")
        if self._static is not None:
            key = self._static[alg]
        else:
            key = await self._jwks_key(str(header.get("kid") or ""), alg)
        settings = self.settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=settings.oidc_audience,
                issuer=settings.oidc_issuer,
                leeway=settings.oidc_leeway_seconds,
                options={
                    "require": ["exp", "iss", "sub"] + (["aud"] if settings.oidc_audience else []),
                    "verify_aud": settings.oidc_audience is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"{type(exc).__name__}: {exc}") from None
        subject = str(claims["sub"])
        if not subject or not subject.isprintable() or len(subject) > 190:
            raise InvalidToken("unusable subject")
        return Identity(
            id=subject,
            name=subject,
            kind="oidc",
            roles=known_roles(_claim_values(_claim(claims, settings.oidc_roles_claim))),
            teams=frozenset(_claim_values(_claim(claims, settings.oidc_teams_claim))),
        )
