"""Egress policy: which addresses a step may open a connection to.

Every HTTP request a step sends (http, data_fetch, api_call, metrics_publish, and every request
a ui_screenshot page makes, via rb_engine.browser.EgressRoute; redirects
included, since each hop goes through the transport again) goes through `EgressTransport`:

1. the host name is resolved once (cloud metadata names are refused without a lookup; numeric
   forms such as `2130706433` or `0x7f.1` are read as the address they spell);
2. each address is checked: link-local (169.254.0.0/16, fe80::/10) and cloud metadata addresses
   are always refused; loopback, private, shared (100.64.0.0/10), unspecified, multicast and
   other non-global addresses are refused unless RB_EGRESS_ALLOW names the address's network
   or the host name; public addresses are allowed;
3. the connection goes to the first allowed address, exactly that one (the URL's host is
   replaced by it; the Host header and TLS SNI and certificate check keep the name), so a
   second DNS answer can never send it elsewhere.

A refusal is an `EgressRefused` raised before any connection is attempted: nothing is sent.
The resolver is injectable (tests map names to addresses without any DNS traffic).

Also here: URLs without query strings, fragments or credentials for logs and step errors, and
the filter that keeps httpx's INFO line ("HTTP Request: GET ...") free of query strings, which
often carry tokens.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from rb_common.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses it resolves to (as text), in preference order.
Resolver = Callable[[str, int], Awaitable[list[str]]]

METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
    }
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle...
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
ALWAYS_REFUSED = frozenset({"metadata", "link-local"})
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class EgressRefused(Exception):
    """A step tried to reach an address the policy refuses; the message says which and why."""

    def __init__(self, address: str, kind: str, url: str) -> None:
        self.address, self.kind, self.url = address, kind, url
        remedy = "never allowed" if kind in ALWAYS_REFUSED else "allow it with RB_EGRESS_ALLOW"
        super().__init__(f"egress refused: {address} ({kind}) for {url} — {remedy}")
        self.message = str(self)


def redact_url(url: httpx.URL | str) -> str:
    """The URL without query string, fragment and credentials: fit for logs and step errors."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        return str(parsed.copy_with(query=None, fragment=None, userinfo=b""))
    except (httpx.InvalidURL, TypeError, ValueError):
        text = str(url)
        for mark in ("?", "#"):
            text = text.split(mark, 1)[0]
        scheme, sep, rest = text.partition("://")
        return scheme + sep + rest.rpartition("@")[2] if sep else text


def address_kind(address: IPAddress) -> str:
    """What kind of address this is, for the policy: `public` or the reason it is not."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_kind(embedded)
    if address in METADATA_ADDRESSES:
        return "metadata"
    if address.is_link_local:
        return "link-local"
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "shared"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "reserved"
    return "public"


def parse_address(host: str) -> IPAddress | None:
    """The address a host names by itself: an IP literal, or a numeric form the C library
    would read as one (`2130706433`, `0x7f.1`, `127.1`); None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class EgressPolicy:
    """RB_EGRESS_ALLOW, parsed: networks, exact host names and `*.suffix` wildcards."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> EgressPolicy:
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        suffixes: list[str] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*."):
                suffixes.append(entry[1:])
            elif "/" in entry or " " in entry:
                raise ValueError(f"RB_EGRESS_ALLOW: {raw!r} is neither a host name nor a CIDR")
            else:
                hosts.add(entry)
        return cls(tuple(networks), frozenset(hosts), tuple(suffixes))

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        return cls.parse(settings.egress_allow)

    def host_allowed(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        return name in self.hosts or any(name.endswith(suffix) for suffix in self.suffixes)

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """None if `host` may be reached at `address`, else the kind of address that is not."""
        kind = address_kind(address)
        if kind == "public":
            return None
        if kind in ALWAYS_REFUSED:
            return kind
        if any(address in network for network in self.networks) or self.host_allowed(host):
            return None
        return kind

    async def pin(self, url: httpx.URL, resolve: Resolver | None = None) -> IPAddress:
        """The one checked address a request to `url` connects to; EgressRefused otherwise."""
        host = url.host
        shown = redact_url(url)
        if host.lower().rstrip(".") in METADATA_HOSTS:
            raise EgressRefused(host, "metadata", shown)
        literal = parse_address(host)
        if literal is not None:
            candidates = [literal]
        else:
            port = url.port or _DEFAULT_PORTS.get(url.scheme, 80)
            resolved = await (resolve or system_resolve)(host, port)
            candidates = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolved]
            if not candidates:
                raise httpx.ConnectError(f"{host} resolves to no address")
        first_refusal: tuple[IPAddress, str] | None = None
        for address in candidates:
            kind = self.refusal(host, address)
            if kind is None:
                return address
            first_refusal = first_refusal or (address, kind)
        assert first_refusal is not None
        address, kind = first_refusal
        raise EgressRefused(str(address) if literal is not None else f"{host} -> {address}", kind, shown)


async def system_resolve(host: str, port: int) -> list[str]:
    """The system resolver (getaddrinfo), once per request; addresses in its order, deduplicated."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise httpx.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    seen: dict[str, None] = {}
    for *_, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


class EgressTransport(httpx.AsyncBaseTransport):
    """An httpx transport that checks every request's destination against the policy and
    connects to the checked address only."""

    def __init__(self, policy: EgressPolicy, resolve: Resolver | None = None, **transport: Any) -> None:
        self.policy = policy
        self.resolve = resolve
        # No proxies from the environment: a proxy would make the connection, unchecked.
        self._inner = httpx.AsyncHTTPTransport(trust_env=False, **transport)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in _DEFAULT_PORTS:  # refused as httpx would, before any lookup
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{url.scheme}://'.")
        address = await self.policy.pin(url, self.resolve)
        if url.host == str(address):
            return await self._inner.handle_async_request(request)
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=str(address)),
            headers=request.headers,  # the Host header keeps the name
            stream=request.stream,
            extensions={**request.extensions, "sni_hostname": url.host},
        )
        return await self._inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _NoQueryStrings(logging.Filter):
    """Rewrites httpx.URL arguments of log records to their redacted form."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(redact_url(a) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def quiet_http_logs() -> None:
    """httpx logs each request's full URL at INFO; keep the line, drop query strings (idempotent)."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoQueryStrings) for f in logger.filters):
            logger.addFilter(_NoQueryStrings())


quiet_http_logs()
