"""Real peers for integration tests: a scriptable HTTP server on loopback, step contexts, and
the local PostgreSQL.

`http_server` is a real threaded HTTP/1.1 server on 127.0.0.1 (port chosen by the OS). Tests
script replies per path and then assert on what the server actually received::

    def test_x(http_server):
        http_server.ok("/data", {"a": 1})
        http_server.fail_then_succeed("/flaky", failures=2, body={"ok": True})
        http_server.hang("/slow")                 # blocks until the test ends
        http_server.echo("/echo")                 # replies with what it received
        http_server.graphql("/gql", data={...})   # or errors=[{"message": ...}]
        http_server.respond("/plain", 418, text="teapot")
        R = http_server.Reply
        http_server.script("/seq", R(500), R(200, json={...}))  # in order, last repeats
        url = http_server.url_for("/data")
        ...
        [request] = http_server.requests_to("/data")
        assert request.headers["idempotency-key"] == ...
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from rb_common.settings import Settings
from rb_engine.clock import SystemClock
from rb_engine.steps.base import StepContext
from rb_store.db import database_url, make_engine, migrate

_UNSET: Any = object()


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ScriptedReply:
    """One scripted response. `hang=True` holds the request open until the server stops."""

    status: int = 200
    json: Any = _UNSET
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False

    def encode(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if self.json is not _UNSET:
            headers.setdefault("Content-Type", "application/json")
            return json.dumps(self.json).encode("utf-8"), headers
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return (self.text or "").encode("utf-8"), headers


Handler = Callable[[RecordedRequest], ScriptedReply]


class ScriptedServer:
    """Threaded loopback HTTP server whose replies are scripted per path (query ignored).

    Test modules should not import from this conftest (module name `conftest` is ambiguous
    across the tree); use the fixture's methods, and `http_server.Reply` for `script()`.
    """

    Reply: ClassVar[type[ScriptedReply]] = ScriptedReply

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.hanging = threading.Event()  # set when a request reaches a hanging route
        self._routes: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def url_for(self, path: str) -> str:
        return self.url + path

    # -- scripting ---------------------------------------------------------------------------

    def route(self, path: str, handler: Handler) -> None:
        with self._lock:
            self._routes[path] = handler

    def script(self, path: str, *replies: ScriptedReply) -> None:
        """Serve `replies` in order; the last one repeats once they run out."""
        if not replies:
            raise ValueError("script needs at least one reply")
        pending = list(replies)
        lock = threading.Lock()

        def handler(_: RecordedRequest) -> ScriptedReply:
            with lock:
                return pending.pop(0) if len(pending) > 1 else pending[0]

        self.route(path, handler)

    def ok(self, path: str, body: Any, status: int = 200) -> None:
        self.script(path, ScriptedReply(status, json=body))

    def respond(
        self,
        path: str,
        status: int = 200,
        *,
        json: Any = _UNSET,
        text: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Always answer `path` with this status and a JSON (`json=`) or text body."""
        self.script(path, ScriptedReply(status, json=json, text=text, headers=dict(headers or {})))

    def fail_then_succeed(self, path: str, failures: int, body: Any, status: int = 503) -> None:
        fails = [ScriptedReply(status, json={"error": f"failure {i + 1}"}) for i in range(failures)]
        self.script(path, *fails, ScriptedReply(200, json=body))

    def hang(self, path: str) -> None:
        self.script(path, ScriptedReply(hang=True))

    def echo(self, path: str, status: int = 200) -> None:
        """Reply with JSON describing the request: method, path, query, headers, body."""

        def handler(request: RecordedRequest) -> ScriptedReply:
            try:
                body: Any = request.json() if request.body else None
            except ValueError:
                body = request.text
            return ScriptedReply(
                status,
                json={
                    "method": request.method,
                    "path": request.path,
                    "query": request.query,
                    "headers": request.headers,
                    "body": body,
                },
            )

        self.route(path, handler)

    def graphql(self, path: str, data: Any = None, errors: list[dict[str, Any]] | None = None) -> None:
        payload: dict[str, Any] = {"data": data}
        if errors is not None:
            payload["errors"] = errors
        self.script(path, ScriptedReply(200, json=payload))

    # -- inspection --------------------------------------------------------------------------

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait_for_requests(self, path: str, count: int = 1, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block (in a thread) until `count` requests reached `path`; raises on timeout."""
        with self._arrived:
            ok = self._arrived.wait_for(lambda: sum(r.path == path for r in self.requests) >= count, timeout)
            found = [r for r in self.requests if r.path == path]
        if not ok:
            raise AssertionError(f"{len(found)} requests to {path} within {timeout}s, want {count}")
        return found

    def close(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- plumbing ----------------------------------------------------------------------------

    def _dispatch(self, request: RecordedRequest) -> ScriptedReply:
        with self._arrived:
            self.requests.append(request)
            handler = self._routes.get(request.path)
            self._arrived.notify_all()
        if handler is None:
            return ScriptedReply(404, json={"error": f"no route for {request.path}"})
        return handler(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                request = RecordedRequest(
                    method=self.command,
                    path=split.path,
                    query=parse_qs(split.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                reply = server._dispatch(request)
                if reply.hang:
                    server.hanging.set()
                    server._stopping.wait(30)
                    self.close_connection = True
                    return
                payload, headers = reply.encode()
                self.send_response(reply.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output readable

        return _Handler


@pytest.fixture
def http_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def make_ctx(tmp_path: Path) -> Callable[..., StepContext]:
    """`make_ctx(**overrides)`: a StepContext with a real clock, base_dir=tmp_path and a fresh
    idempotency key; override any field (settings=Settings(...), evaluate=..., ...)."""

    def factory(**overrides: Any) -> StepContext:
        values: dict[str, Any] = {
            "execution_id": "exec-" + uuid.uuid4().hex[:8],
            "step_id": "step",
            "attempt": 1,
            "idempotency_key": "idem-" + uuid.uuid4().hex,
            "settings": Settings(home=tmp_path / ".rb"),
            "clock": SystemClock(),
            "base_dir": tmp_path,
        }
        values.update(overrides)
        return StepContext(**values)

    return factory


@pytest.fixture
def step_dir() -> Iterator[Path]:
    """A directory shell steps may write to (mode 0777, under the system temp directory): they
    run as another user (`nobody` when the tests run as root), who cannot enter pytest's
    tmp_path (0700, owned by the test user)."""
    path = Path(tempfile.mkdtemp(prefix="rb-test-steps-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class SocketGuard:
    """What the `socket_guard` fixture saw: loopback connects, and anything else (a violation)."""

    connects: list[tuple[str, int]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


def _loopback(host: object) -> bool:
    if host in (None, "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def socket_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[SocketGuard]:
    """Fails the test on any connect() to an address that is not loopback, and on any name
    lookup other than localhost and loopback literals (a DNS query is a packet too): the call
    raises at once, before anything is sent, and the test fails at teardown whatever caught
    the error. Records the loopback addresses connected to."""
    guard = SocketGuard()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def checked(address: Any) -> None:
        if isinstance(address, tuple) and not _loopback(address[0]):
            guard.violations.append(f"connect to {address!r}")
            raise ConnectionRefusedError(f"socket_guard: connect to a non-loopback address {address!r}")
        if isinstance(address, tuple):
            guard.connects.append((str(address[0]), int(address[1])))

    def connect(self: socket.socket, address: Any) -> None:
        checked(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        checked(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback(host.decode() if isinstance(host, bytes) else host):
            guard.violations.append(f"name lookup of {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"socket_guard: lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield guard
    assert not guard.violations, f"the test tried to reach outside loopback: {guard.violations}"


POSTGRES_URL = os.environ.get("RB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The local PostgreSQL (override with RB_TEST_POSTGRES_URL). Fails, never skips, when
    it is down: integration tests exist to talk to the real thing."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}")
    return POSTGRES_URL


# -- the store's and the recorder's: a private PostgreSQL database per session, a private
# durable consumer per test -----------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_database_url(postgres_url: str) -> Iterator[str]:
    """A fresh database (rb_test_<random>) for this session, dropped at the end."""
    import psycopg

    name = f"rb_test_{uuid.uuid4().hex[:12]}"
    admin = make_url(postgres_url).set(database="postgres")
    admin_dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_engine(pg_database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url(Settings(database_url=pg_database_url)))
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
async def consumer_name() -> AsyncIterator[str]:
    """A private durable consumer name; the consumer is deleted after the test."""
    from nats.js.errors import NotFoundError

    from rb_common.bus import DEFAULT_NAMES, connect

    name = f"recorder-test-{uuid.uuid4().hex[:12]}"
    yield name
    bus = await connect(os.environ["RB_TEST_NATS_URL"], name="rb-recorder-test-cleanup")
    try:
        with contextlib.suppress(NotFoundError):
            await bus.js.delete_consumer(DEFAULT_NAMES.events_stream, name)
    finally:
        await bus.close()


@pytest.fixture
def own_pg_engine(postgres_url: str) -> Iterator[Engine]:
    """An engine on a fresh, unmigrated database of this test's own (for tests that migrate it
    down and up), dropped afterwards."""
    import psycopg

    name = f"rb_test_{uuid.uuid4().hex[:12]}"
    admin = make_url(postgres_url).set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(database_url(Settings(database_url=url)))
    try:
        yield engine
    finally:
        engine.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

