"""Real peers for the notifier: a loopback server speaking the Slack Web API, aiosmtpd, the
notifier as its own OS process (`python -m rb_notifier`), and the local NATS JetStream.

The fixtures are re-exported by this directory's conftest; tests import the helpers from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from rb_common.bus import DEFAULT_NAMES, Bus, append_event, connect, last_subject_seq
from rb_common.events import Event
from rb_common.ports import ConcurrencyError

NATS_URL = os.environ["RB_TEST_NATS_URL"]


async def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- Slack Web API ------------------------------------------------------------------------------


@dataclass
class SlackCall:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float
    status: int | None = None  # what the server answered; None: no answer (stalled, killed)
    ts: str | None = None


@dataclass
class SlackMessage:
    """A message as Slack keeps it in a channel."""

    ts: str
    channel: str
    text: str
    thread_ts: str | None
    metadata: dict[str, Any] | None
    body: dict[str, Any]


CHANNELS = {"ops": "C0OPS", "alerts": "C0ALERTS", "other": "C0OTHER"}


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


class SlackApi:
    """The Slack Web API methods rb uses, answered like Slack: `chat.postMessage` (message
    metadata kept with the message), `conversations.history` (top-level messages, newest first),
    `conversations.replies` (the parent, then its replies, oldest first) — both with
    `oldest`/`latest` (exclusive unless `inclusive`), `limit` and cursor paging, metadata only
    with `include_all_metadata` — and `conversations.list` (paged).

    Faults: the first post answered 429 with Retry-After: 1 (`rate_limit_first`), or stalled until
    `release` and dropped unanswered, message not kept (`stall_first`), or held until `release`
    and then kept and answered (`hold_first`: a slow post that lands); every post answered 429
    with `Retry-After: retry_after` until `rate_limited_until` (monotonic time) passes, or for
    `rate_limited_for` seconds from the first post (a window a slow start cannot eat); every post
    answered 503 while `down` is set; with `hold_posts` set, posts are kept (Slack has the
    message) but their answers wait for `release` and are then dropped (the sender never learns
    the ts)."""

    def __init__(
        self,
        *,
        rate_limit_first: bool = False,
        stall_first: bool = False,
        hold_first: bool = False,
        page_size: int | None = None,
    ) -> None:
        self.rate_limit_first = rate_limit_first
        self.stall_first = stall_first
        self.hold_first = hold_first
        self.page_size = page_size  # the most a page holds, whatever `limit` asks (forces paging)
        self.calls: list[SlackCall] = []
        self.messages: list[SlackMessage] = []
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.down = threading.Event()
        self.hold_posts = threading.Event()
        self.held = 0  # posts kept whose answers wait for `release`
        self.rate_limited_until = 0.0
        self.rate_limited_for = 0.0
        self.retry_after = 1
        self._lock = threading.Lock()
        self._last_ts = 0.0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/api/"

    @property
    def delivered(self) -> list[SlackCall]:
        """The posts Slack answered 200 with ok and a ts."""
        with self._lock:
            return [c for c in self.calls if c.status == 200 and c.path == "/api/chat.postMessage"]

    @property
    def posts(self) -> list[SlackCall]:
        with self._lock:
            return [c for c in self.calls if c.path == "/api/chat.postMessage"]

    def posted(self) -> list[SlackMessage]:
        """What the channels hold, oldest first: the truth about what was delivered."""
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _channel_id(self, channel: str) -> str | None:
        if channel.startswith("#"):
            return CHANNELS.get(channel[1:])
        return channel if channel in CHANNELS.values() else None

    def _next_ts(self) -> str:
        now = max(time.time(), self._last_ts + 0.000001)
        self._last_ts = now
        return f"{now:.6f}"

    def _answer(self, call: SlackCall, index: int) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        method = call.path.removeprefix("/api/")
        if method == "chat.postMessage":
            return self._post(call, index)
        if method == "conversations.history":
            return self._history(call.body)
        if method == "conversations.replies":
            return self._replies(call.body)
        if method == "conversations.list":
            items = [{"id": cid, "name": name, "is_channel": True} for name, cid in CHANNELS.items()]
            return self._page(items, call.body, "channels")
        return 404, {"ok": False, "error": "unknown_method"}, {}

    def _post(self, call: SlackCall, index: int) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        if index == 0 and self.stall_first:
            self.stalled.set()
            self.release.wait(60)
            return None
        if index == 0 and self.hold_first:
            self.stalled.set()
            self.release.wait(60)
        if index == 0 and self.rate_limit_first:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}
        if self.rate_limited_for and index == 0:
            self.rate_limited_until = time.monotonic() + self.rate_limited_for
        if time.monotonic() < self.rate_limited_until:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(self.retry_after)}
        if self.down.is_set():
            return 503, {"ok": False, "error": "service_unavailable"}, {}
        body = call.body
        channel = self._channel_id(str(body.get("channel") or ""))
        if channel is None:
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        metadata = body.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        thread_ts = body.get("thread_ts") or None
        with self._lock:
            if thread_ts and not any(m.ts == thread_ts and m.channel == channel for m in self.messages):
                return 200, {"ok": False, "error": "thread_not_found"}, {}
            ts = self._next_ts()
            message = SlackMessage(ts, channel, str(body.get("text") or ""), thread_ts, metadata, body)
            self.messages.append(message)
            call.ts = ts
            held = self.hold_posts.is_set()
            if held:
                self.held += 1
        if held:
            self.release.wait(60)
            return None
        return 200, {"ok": True, "channel": channel, "ts": ts, "message": self._shown(message, True)}, {}

    @staticmethod
    def _shown(message: SlackMessage, with_metadata: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text}
        if message.thread_ts:
            out["thread_ts"] = message.thread_ts
        if with_metadata and message.metadata:
            out["metadata"] = message.metadata
        return out

    @staticmethod
    def _window(messages: list[SlackMessage], params: dict[str, Any]) -> list[SlackMessage]:
        inclusive = _flag(params.get("inclusive"))
        oldest = float(params.get("oldest") or 0)
        latest = float(params.get("latest") or 1e12)

        def inside(m: SlackMessage) -> bool:
            ts = float(m.ts)
            if inclusive:
                return oldest <= ts <= latest
            return oldest < ts < latest

        return [m for m in messages if inside(m)]

    def _page(
        self, items: list[Any], params: dict[str, Any], key: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        limit = int(params.get("limit") or 100)
        if self.page_size:
            limit = min(limit, self.page_size)
        start = int(str(params.get("cursor") or "0").removeprefix("page:") or 0)
        page = items[start : start + limit]
        more = start + limit < len(items)
        return (
            200,
            {
                "ok": True,
                key: page,
                "has_more": more,
                "response_metadata": {"next_cursor": f"page:{start + limit}" if more else ""},
            },
            {},
        )

    def _history(self, params: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        channel = self._channel_id(str(params.get("channel") or ""))
        if channel is None or str(params.get("channel", "")).startswith("#"):
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        with self._lock:
            top = [
                m for m in self.messages if m.channel == channel and (not m.thread_ts or m.thread_ts == m.ts)
            ]
        shown = sorted(self._window(top, params), key=lambda m: float(m.ts), reverse=True)
        meta = _flag(params.get("include_all_metadata"))
        return self._page([self._shown(m, meta) for m in shown], params, "messages")

    def _replies(self, params: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        channel = self._channel_id(str(params.get("channel") or ""))
        parent_ts = str(params.get("ts") or "")
        with self._lock:
            parent = next((m for m in self.messages if m.channel == channel and m.ts == parent_ts), None)
            replies = [m for m in self.messages if m.channel == channel and m.thread_ts == parent_ts]
        if channel is None or str(params.get("channel", "")).startswith("#"):
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        if parent is None:
            return 200, {"ok": False, "error": "thread_not_found"}, {}
        shown = [parent, *sorted(self._window(replies, params), key=lambda m: float(m.ts))]
        meta = _flag(params.get("include_all_metadata"))
        return self._page([self._shown(m, meta) for m in shown], params, "messages")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                self._serve(path, dict(parse_qsl(query)))

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "json" in (self.headers.get("Content-Type") or ""):
                    body = json.loads(raw or b"{}")
                else:
                    body = dict(parse_qsl(raw.decode()))
                path, _, query = self.path.partition("?")
                self._serve(path, {**dict(parse_qsl(query)), **body})

            def _serve(self, path: str, body: dict[str, Any]) -> None:
                call = SlackCall(
                    path, body, {k.lower(): v for k, v in self.headers.items()}, time.monotonic()
                )
                with api._lock:
                    index = len([c for c in api.calls if c.path == "/api/chat.postMessage"])
                    api.calls.append(call)
                answer = api._answer(call, index)
                if answer is None:
                    self.close_connection = True
                    return
                status, payload, headers = answer
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                call.status = status  # only once the answer is out

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def slack_api(request: pytest.FixtureRequest) -> Iterator[SlackApi]:
    options = getattr(request, "param", {})
    api = SlackApi(**options)
    yield api
    api.close()


# -- SMTP -------------------------------------------------------------------------------------

SMTP_USER, SMTP_PASSWORD = "rb-bot", "smtp-pass-7c1e"


@dataclass
class Mailbox:
    """An aiosmtpd handler: records mail, refuses the first `busy` DATA commands with 451."""

    busy: int = 0
    attempts: int = 0
    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        if self.attempts <= self.busy:
            return "451 4.3.0 Mailbox busy, try again later"
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((envelope, message))
        return "250 2.0.0 OK: queued"

    def authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == SMTP_USER.encode()
            and auth_data.password == SMTP_PASSWORD.encode()
        )
        if ok:
            self.logins.append(SMTP_USER)
        return AuthResult(success=ok)


class SmtpServer:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.port = free_port()
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{self.port}?starttls=false&timeout=5"

    def start(self) -> None:
        self.controller = Controller(
            self.mailbox,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self.mailbox.authenticate,
            auth_require_tls=False,
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """Not started: the test starts it (now, or later to simulate an outage)."""
    server = SmtpServer(Mailbox())
    yield server
    server.stop()


# -- NATS -------------------------------------------------------------------------------------


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    b = await connect(NATS_URL, name="rb-notifier-tests")
    yield b
    await b.close()


@pytest.fixture
async def consumers(bus: Bus) -> AsyncIterator[list[str]]:
    """Durable consumer names the test uses; all deleted at the end."""
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(NotFoundError):
            await bus.js.delete_consumer(DEFAULT_NAMES.events_stream, name)


async def publish(bus: Bus, events: list[Event]) -> None:
    """Append to rb.exec.<id> as the coordinator would (expected last subject sequence).

    An executor may be running on the shared NATS: it appends the notifier's outcomes to the
    execution as notification.sent events, so an append can race with it (and is retried)."""
    for event in events:
        for _ in range(20):
            try:
                await append_event(bus, event, await last_subject_seq(bus, event.execution_id))
                break
            except ConcurrencyError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"could not append {event.type} to {event.execution_id}")


@dataclass
class Recorded:
    type: str
    data: dict[str, Any]
    msg_id: str | None


FINAL = ("notification.sent", "notification.failed")


async def recorded_outcomes(bus: Bus, execution_id: str, *, kinds: tuple[str, ...] = FINAL) -> list[Recorded]:
    """The notification records stored on <ns>.result.<execution_id> (JetStream dedupes them),
    of the given kinds (by default the outcomes, sent and failed; the intents and retries are
    `notification.sending` / `notification.retrying`); step outcomes there (workers of an
    executor on the shared NATS) are left out."""
    subject = bus.names.result_subject(execution_id)
    try:
        last = (await bus.js.get_last_msg(bus.names.inbox_stream, subject)).seq or 0
    except NotFoundError:
        return []
    sub = await bus.js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    out: list[Recorded] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=5)
            body = json.loads(msg.data)
            if body["type"] in kinds:
                out.append(Recorded(body["type"], body["data"], (msg.headers or {}).get("Nats-Msg-Id")))
            if msg.metadata.sequence.stream >= last:
                return out
    finally:
        await sub.unsubscribe()


ALL_RECORDS = ("notification.sending", "notification.retrying", *FINAL)


async def settled(bus: Bus, consumer: str, timeout: float = 30.0) -> None:
    """Wait until the notifier's durable consumer has nothing pending and nothing unacknowledged:
    every event is handled for good, so nothing can be redelivered (and sent) any more."""
    deadline = time.monotonic() + timeout
    while True:
        info = await bus.js.consumer_info(bus.names.events_stream, consumer)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"consumer {consumer}: {info.num_pending} pending, {info.num_ack_pending} unacked"
            )
        await asyncio.sleep(0.1)


# -- the notifier process ---------------------------------------------------------------------


class Notifiers:
    """`python -m rb_notifier` processes; every one is stopped at the end of the test."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RB_SLACK", "RB_SMTP", "RB_SECRET_", "RB_NOTIF", "RB_PUBLIC"))
        }
        self.env = {
            **inherited,
            "RB_NATS_URL": NATS_URL,
            "RB_HOME": str(home),
            "RB_NOTIFIER_DELIVER": "all",
            "RB_NOTIFIER_ACK_WAIT": "3",
            "RB_NOTIFY_RETRY_INITIAL": "0.3",
            "RB_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        log = self.home / f"notifier-{len(self.processes)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "rb_notifier"],
            env={**self.env, **env},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append((process, log))
        return process

    def log_of(self, process: subprocess.Popen[bytes]) -> str:
        path = next(p for proc, p in self.processes if proc is process)
        return path.read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for _, p in self.processes)

    async def wait_log(self, process: subprocess.Popen[bytes], text: str, timeout: float = 30.0) -> None:
        def seen() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"notifier exited with {process.returncode}:\n{self.log_of(process)}")
            return text in self.log_of(process)

        await wait_until(seen, timeout, f"{text!r} in the notifier's log")

    async def started(self, **env: str) -> subprocess.Popen[bytes]:
        process = self.start(**env)
        await self.wait_log(process, "rb-notifier ready")
        return process

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    @staticmethod
    def stop(process: subprocess.Popen[bytes]) -> int:
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=20)

    def stop_all(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                process.terminate()
        for process, _ in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def notifiers(tmp_path: Path) -> Iterator[Notifiers]:
    manager = Notifiers(tmp_path)
    yield manager
    manager.stop_all()


def new_execution_id() -> str:
    return "ntf" + uuid.uuid4().hex[:20]


def notifier_env(execution_id: str, consumer: str, slack_api: SlackApi, **extra: str) -> dict[str, str]:
    """A notifier process of its own (`consumer`) for one execution's events, posting to the
    loopback Slack; `extra` settings on top (RB_NOTIFY_CLAIM_LEASE=..., ...)."""
    return {
        "RB_NOTIFIER_CONSUMER": consumer,
        "RB_NOTIFIER_FILTER_SUBJECT": f"rb.exec.{execution_id}",
        "RB_SLACK_TOKEN": "xoxb-notifier-test",
        "RB_SLACK_BASE_URL": slack_api.base_url,
        **extra,
    }
