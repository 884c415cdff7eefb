"""The egress policy, pure: address kinds, the allowlist, pinning with a resolver, redaction."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from rb_engine.egress import EgressPolicy, EgressRefused, address_kind, parse_address, redact_url


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "metadata"),
        ("169.254.170.2", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("100.64.0.1", "shared"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "metadata"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
        ("8.8.8.8", "public"),
        ("2606:4700:4700::1111", "public"),
    ],
)
def test_address_kinds(address: str, kind: str) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind


def test_numeric_host_forms_are_addresses() -> None:
    assert parse_address("2130706433") == ipaddress.ip_address("127.0.0.1")
    assert parse_address("0x7f.1") == ipaddress.ip_address("127.0.0.1")
    assert parse_address("127.1") == ipaddress.ip_address("127.0.0.1")
    assert parse_address("[::1]") == ipaddress.ip_address("::1")
    assert parse_address("db.internal") is None
    assert parse_address("1e100.net") is None


def test_the_allowlist() -> None:
    policy = EgressPolicy.parse(["127.0.0.1/32", " 10.0.0.0/8 ", "DB.Internal.", "*.svc.cluster.local", ""])
    loopback, private = ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.2.3.4")
    assert policy.refusal("x", loopback) is None
    assert policy.refusal("x", ipaddress.ip_address("127.0.0.2")) == "loopback"
    assert policy.refusal("x", private) is None
    assert policy.refusal("db.internal", ipaddress.ip_address("192.168.1.1")) is None
    assert policy.refusal("a.svc.cluster.local", ipaddress.ip_address("172.20.0.1")) is None
    assert policy.refusal("svc.cluster.local", ipaddress.ip_address("172.20.0.1")) == "private"
    assert policy.refusal("db.internal", ipaddress.ip_address("169.254.169.254")) == "metadata"
    assert EgressPolicy.parse(["0.0.0.0/0"]).refusal("x", ipaddress.ip_address("169.254.0.1")) == "link-local"
    with pytest.raises(ValueError, match="neither a host name nor a CIDR"):
        EgressPolicy.parse(["10.0.0.0/33"])


async def test_pinning_resolves_once_and_takes_the_first_allowed_address() -> None:
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        lookups.append(f"{host}:{port}")
        return ["10.0.0.1", "127.0.0.1", "8.8.8.8"]

    policy = EgressPolicy.parse(["127.0.0.0/8"])
    assert await policy.pin(httpx.URL("https://svc.test/x"), resolve) == ipaddress.ip_address("127.0.0.1")
    assert lookups == ["svc.test:443"]
    with pytest.raises(EgressRefused) as err:
        await EgressPolicy().pin(
            httpx.URL("http://svc.test:8080/x?token=t"), lambda h, p: _const(["10.0.0.1"])
        )
    assert str(err.value) == (
        "egress refused: svc.test -> 10.0.0.1 (private) for http://svc.test:8080/x — allow it with RB_EGRESS_ALLOW"
    )


async def _const(addresses: list[str]) -> list[str]:
    return addresses


def test_redacted_urls_keep_no_query_fragment_or_credentials() -> None:
    assert redact_url("https://u:p@example.com:8443/a/b?token=t#frag") == "https://example.com:8443/a/b"
    assert redact_url(httpx.URL("http://[::1]:8080/x?y=1")) == "http://[::1]:8080/x"
    assert redact_url("http://u:p@h:99999/x?token=t") == "http://h:99999/x"  # unparseable: cut by hand
