"""The egress policy on real requests (issue 12, part 8).

Nothing here sends a packet to an address that is not loopback: names are mapped to addresses
by a test resolver (no DNS query), refused addresses are refused before any connect, and
`socket_guard` fails the test on any connect or lookup outside loopback. "Allowed" cases map
names to 127.0.0.1 and allowlist it; the redirects come from the local scripted server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from rb_common.settings import Settings
from rb_engine.steps.api_call import ApiCallStep
from rb_engine.steps.base import StepContext, StepFailed
from rb_engine.steps.http import HttpStep
from rb_engine.steps.metrics_publish import MetricsPublishStep

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("socket_guard")]

MakeCtx = Callable[..., StepContext]
LOOPBACK = ["127.0.0.1/32"]


class FakeDNS:
    """A resolver for the egress policy: names to addresses, no queries; records lookups."""

    def __init__(self, **names: list[str]) -> None:
        self.names = {name.replace("_", "."): addresses for name, addresses in names.items()}
        self.lookups: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append((host, port))
        if host not in self.names:
            raise httpx.ConnectError(f"FakeDNS: no such name {host}")
        return self.names[host]


def ctx_for(make_ctx: MakeCtx, allow: list[str], dns: FakeDNS | None = None) -> StepContext:
    return make_ctx(settings=Settings(egress_allow=allow), resolve_host=dns or FakeDNS())


async def fetch(ctx: StepContext, url: str) -> Any:
    return await HttpStep("http").run({"url": url}, ctx)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://169.254.169.254/latest/meta-data/iam/",
            "egress refused: 169.254.169.254 (metadata) for http://169.254.169.254/latest/meta-data/iam/"
            " — never allowed",
        ),
        (
            "http://169.254.10.1/",
            "egress refused: 169.254.10.1 (link-local) for http://169.254.10.1/ — never allowed",
        ),
        ("http://[fd00:ec2::254]/latest", "egress refused: fd00:ec2::254 (metadata)"),
        ("http://[fe80::1]/", "egress refused: fe80::1 (link-local)"),
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            "egress refused: metadata.google.internal (metadata)",
        ),
        (
            "http://10.0.0.5/admin",
            "egress refused: 10.0.0.5 (private) for http://10.0.0.5/admin — allow it with RB_EGRESS_ALLOW",
        ),
        ("http://192.168.1.1/", "egress refused: 192.168.1.1 (private)"),
        ("http://172.16.0.1/", "egress refused: 172.16.0.1 (private)"),
        ("http://100.64.0.1/", "egress refused: 100.64.0.1 (shared)"),
        ("http://[fc00::1]/", "egress refused: fc00::1 (private)"),
        ("http://0.0.0.0:8080/", "egress refused: 0.0.0.0 (unspecified)"),
        ("http://127.0.0.1:8080/api/v1/runbooks", "egress refused: 127.0.0.1 (loopback)"),
        ("http://[::1]:8080/", "egress refused: ::1 (loopback)"),
        (
            "http://2130706433:8080/metrics",
            "egress refused: 127.0.0.1 (loopback) for http://2130706433:8080/metrics",
        ),
        ("http://[::ffff:10.0.0.5]/", "egress refused: ::ffff:a00:5 (private)"),
    ],
)
async def test_refused_addresses(make_ctx: MakeCtx, url: str, message: str) -> None:
    dns = FakeDNS()
    with pytest.raises(StepFailed) as err:
        await fetch(ctx_for(make_ctx, [], dns), url)
    assert err.value.message.startswith(message)
    assert err.value.retryable is False
    assert dns.lookups == []  # literals and metadata names: no lookup at all


async def test_link_local_and_metadata_are_refused_even_when_allowlisted(make_ctx: MakeCtx) -> None:
    ctx = ctx_for(make_ctx, ["169.254.0.0/16", "fd00::/8", "metadata.google.internal", "0.0.0.0/0"])
    for url in ("http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://metadata.google.internal/"):
        with pytest.raises(StepFailed, match=r"\(metadata\) .* never allowed"):
            await fetch(ctx, url)


async def test_loopback_needs_the_allowlist(make_ctx: MakeCtx, http_server: Any) -> None:
    http_server.ok("/data", {"ok": True})
    url = http_server.url_for("/data")
    with pytest.raises(StepFailed, match=r"^egress refused: 127\.0\.0\.1 \(loopback\)"):
        await fetch(ctx_for(make_ctx, []), url)
    assert http_server.requests_to("/data") == []  # refused before connecting
    assert await fetch(ctx_for(make_ctx, LOOPBACK), url) == {"ok": True}


@pytest.mark.parametrize(
    ("target", "refused"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 (metadata)"),
        ("http://10.0.0.5/admin", "10.0.0.5 (private)"),
        ("http://[::1]:9/", "::1 (loopback)"),
        ("http://internal.test/", "internal.test -> 10.1.2.3 (private)"),
    ],
)
async def test_a_redirect_is_checked_again(
    make_ctx: MakeCtx, http_server: Any, target: str, refused: str
) -> None:
    http_server.respond("/go", 302, headers={"Location": target})
    dns = FakeDNS(internal_test=["10.1.2.3"])
    with pytest.raises(StepFailed) as err:
        await fetch(ctx_for(make_ctx, LOOPBACK, dns), http_server.url_for("/go") + "?token=s3cret")
    assert err.value.message.startswith(f"egress refused: {refused} for ")
    assert err.value.message.endswith(f"(redirected from {http_server.url_for('/go')})")
    assert "s3cret" not in err.value.message
    assert len(http_server.requests_to("/go")) == 1


async def test_a_redirect_to_an_allowed_place_is_followed(make_ctx: MakeCtx, http_server: Any) -> None:
    http_server.ok("/there", {"arrived": True})
    http_server.respond("/go", 302, headers={"Location": http_server.url_for("/there")})
    assert await fetch(ctx_for(make_ctx, LOOPBACK), http_server.url_for("/go")) == {"arrived": True}


async def test_a_name_that_resolves_to_a_private_address_is_refused(make_ctx: MakeCtx) -> None:
    dns = FakeDNS(db_internal=["10.0.0.7"], mixed_test=["192.168.0.9", "169.254.169.254"])
    ctx = ctx_for(make_ctx, LOOPBACK, dns)
    with pytest.raises(StepFailed) as err:
        await fetch(ctx, "http://db.internal:8080/x?key=v")
    assert err.value.message == (
        "egress refused: db.internal -> 10.0.0.7 (private) for http://db.internal:8080/x — allow it with RB_EGRESS_ALLOW"
    )
    with pytest.raises(StepFailed, match=r"mixed\.test -> 192\.168\.0\.9 \(private\)"):
        await fetch(ctx, "https://mixed.test/")
    assert dns.lookups == [("db.internal", 8080), ("mixed.test", 443)]


async def test_a_name_connects_to_exactly_the_checked_address(
    make_ctx: MakeCtx, http_server: Any, socket_guard: Any
) -> None:
    """Resolved once, pinned: the connection goes to the address that was checked, and the
    request still names the host (Host header)."""
    http_server.echo("/who")
    port = int(http_server.url.rsplit(":", 1)[1])
    # The first answer is refused (not allowlisted), the second allowed: only that one is used.
    dns = FakeDNS(svc_test=["10.9.9.9", "127.0.0.1"])
    socket_guard.connects.clear()
    result = await fetch(ctx_for(make_ctx, LOOPBACK, dns), f"http://svc.test:{port}/who")
    assert result["headers"]["host"] == f"svc.test:{port}"
    assert dns.lookups == [("svc.test", port)]
    assert ("127.0.0.1", port) in socket_guard.connects
    assert all(address == "127.0.0.1" for address, _ in socket_guard.connects)


async def test_a_host_name_in_the_allowlist(make_ctx: MakeCtx, http_server: Any) -> None:
    http_server.ok("/data", {"ok": 1})
    port = int(http_server.url.rsplit(":", 1)[1])
    dns = FakeDNS(api_internal=["127.0.0.1"], other_internal=["127.0.0.1"], x_svc_internal=["127.0.0.1"])
    ctx = ctx_for(make_ctx, ["api.internal", "*.svc.internal"], dns)
    assert await fetch(ctx, f"http://api.internal:{port}/data") == {"ok": 1}
    assert await fetch(ctx, f"http://x.svc.internal:{port}/data") == {"ok": 1}
    with pytest.raises(StepFailed, match=r"other\.internal -> 127\.0\.0\.1 \(loopback\)"):
        await fetch(ctx, f"http://other.internal:{port}/data")


async def test_api_call_and_metrics_publish_go_through_the_policy(make_ctx: MakeCtx) -> None:
    ctx = ctx_for(make_ctx, [])
    with pytest.raises(StepFailed, match=r"^egress refused: 10\.0\.0\.5 \(private\)"):
        await ApiCallStep().run({"endpoint": "http://10.0.0.5/graphql", "query": "{ a }"}, ctx)
    with pytest.raises(StepFailed, match=r"^egress refused: 169\.254\.169\.254 \(metadata\)"):
        await MetricsPublishStep().run(
            {"metrics": {"x": 1}, "gateway_url": "http://169.254.169.254:9091"}, ctx
        )
    pushgateway = make_ctx(settings=Settings(egress_allow=[], pushgateway_url="http://127.0.0.1:9091"))
    with pytest.raises(StepFailed, match=r"^egress refused: 127\.0\.0\.1 \(loopback\)"):
        await MetricsPublishStep().run({"metrics": {"x": 1}}, pushgateway)


async def test_no_query_strings_in_logs_or_errors(
    make_ctx: MakeCtx, http_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    http_server.ok("/data", {"ok": True})
    http_server.respond("/missing", 404, text="nope")
    ctx = ctx_for(make_ctx, LOOPBACK)
    with caplog.at_level(logging.DEBUG):
        await fetch(ctx, http_server.url_for("/data") + "?token=secret-in-url")
        await HttpStep("http").run(
            {"url": http_server.url_for("/data"), "params": {"key": "secret-param"}}, ctx
        )
        with pytest.raises(StepFailed) as err:
            await fetch(ctx, http_server.url_for("/missing") + "?token=secret-in-error")
    sent = [request.query for request in http_server.requests_to("/data")]
    assert sent == [{"token": ["secret-in-url"]}, {"key": ["secret-param"]}]  # sent, never logged
    assert f"HTTP Request: GET {http_server.url_for('/data')} " in caplog.text
    for secret in ("secret-in-url", "secret-param", "secret-in-error"):
        assert secret not in caplog.text
        assert secret not in err.value.message
    assert err.value.message == f"HTTP 404 from {http_server.url_for('/missing')}: nope"
