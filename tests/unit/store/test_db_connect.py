"""rb_store.db.make_engine: a PostgreSQL connection that cannot open gives up after
CONNECT_TIMEOUT instead of psycopg's 130 s; a connect_timeout in the URL, or PGCONNECT_TIMEOUT in
the environment, wins."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from rb_store import db


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port whose listener completes TCP handshakes (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_server_that_never_answers_is_given_up_on_after_the_connect_timeout(
    silent_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "CONNECT_TIMEOUT", 2)  # libpq's least
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    engine = db.make_engine(f"postgresql+psycopg://rb@127.0.0.1:{silent_server}/rb")
    assert isinstance(_opens_within(engine, 6), OperationalError)


def _opens_within(engine: Engine, seconds: float) -> BaseException | None:
    """What connecting raised within `seconds` (a daemon thread: a connect that never returns
    fails the test instead of holding it)."""
    outcome: queue.Queue[BaseException | None] = queue.Queue()

    def connect() -> None:
        try:
            with engine.connect():
                outcome.put(None)
        except BaseException as exc:
            outcome.put(exc)

    threading.Thread(target=connect, daemon=True).start()
    try:
        return outcome.get(timeout=seconds)
    except queue.Empty:
        pytest.fail(f"the connection was still opening after {seconds} s")
    finally:
        engine.dispose()


def test_the_urls_own_connect_timeout_wins(silent_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "CONNECT_TIMEOUT", 600)
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    engine = db.make_engine(f"postgresql+psycopg://rb@127.0.0.1:{silent_server}/rb?connect_timeout=2")
    assert isinstance(_opens_within(engine, 6), OperationalError)


def test_pgconnect_timeout_in_the_environment_wins(silent_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "CONNECT_TIMEOUT", 600)
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "2")
    engine = db.make_engine(f"postgresql+psycopg://rb@127.0.0.1:{silent_server}/rb")
    assert isinstance(_opens_within(engine, 6), OperationalError)
