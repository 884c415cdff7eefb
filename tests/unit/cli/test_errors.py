"""Bad usage and bad input: one line, `error: <message>`, exit 2; never a box or a traceback."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import Rb


def one_error_line(code: int, out: str, err: str) -> str:
    assert code == 2, (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err and "╭" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["bogus"], "No such command 'bogus'"),
        (["run"], "Missing argument 'RUNBOOK'"),
        (["run", "rb-000-hello", "--nope"], "No such option: --nope"),
        (["replay", "x", "--source", "carrier-pigeon"], "--source 'carrier-pigeon'"),
        (["keys", "create", "bot"], "Missing option '--role'"),
        (["graph", "rb-000-hello", "--format", "png"], "--format 'png'"),
    ],
)
def test_usage_errors_are_one_line(rb: Rb, args: list[str], says: str) -> None:
    line = one_error_line(*rb(*args))
    assert says in line


def test_rb_test_of_a_missing_directory_says_so(rb: Rb) -> None:
    line = one_error_line(*rb("test", "runbooks/typo"))
    assert "runbooks/typo: no such directory" in line


def test_rb_test_of_a_directory_without_a_pack_says_what_to_give(rb: Rb, tmp_path: Path) -> None:
    line = one_error_line(*rb("test", str(tmp_path)))
    assert "no acceptance.yml" in line and "--fixture" in line


def test_an_invalid_runbook_is_one_line_naming_its_issues(rb: Rb, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: bad\nname: x\nversion: 1.0.0\nowner: me\nsteps:\n  - {id: a, type: nope}\n")
    line = one_error_line(*rb("run", str(bad)))
    assert "invalid runbook" in line and "nope" in line


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_api_says_to_run_rb_up_or_set_rb_api_url(
    rb: Rb, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RB_API_URL", f"http://127.0.0.1:{_closed_port()}")
    for args in (["executions"], ["trigger", "rb-000-hello"], ["logs", "abc123"], ["keys", "list"]):
        line = one_error_line(*rb(*args))
        assert "cannot reach the API" in line and "rb up" in line and "RB_API_URL" in line, line


class _Problem(BaseHTTPRequestHandler):
    """An API that answers every request with a 422 problem+json carrying validation errors."""

    def do_GET(self) -> None:
        body = json.dumps(
            {
                "type": "https://rb.dev/problems/validation",
                "title": "Invalid request",
                "status": 422,
                "detail": "the query is invalid",
                "errors": [{"loc": ["query", "limit"], "msg": "must be at most 500", "type": "le"}],
            }
        ).encode()
        self.send_response(422)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def problem_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Problem)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_api_error_is_one_line_with_its_validation_errors(
    rb: Rb, monkeypatch: pytest.MonkeyPatch, problem_api: str
) -> None:
    monkeypatch.setenv("RB_API_URL", problem_api)
    line = one_error_line(*rb("executions", "--limit", "9999"))
    assert line == "error: 422: the query is invalid; query.limit: must be at most 500"
    line = one_error_line(*rb("trigger", "rb-000-hello", "-p", "x=1"))
    assert "422: the query is invalid" in line and "{" not in line


def test_an_unreachable_nats_says_so_at_once(rb: Rb, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RB_NATS_URL", f"nats://127.0.0.1:{_closed_port()}")
    event = tmp_path / "alert.yaml"
    event.write_text("source: alertmanager\nlabels: {alertname: X}\n")
    line = one_error_line(*rb("trigger", "--event", str(event)))
    assert "cannot reach NATS" in line and "rb up" in line and "RB_NATS_URL" in line
