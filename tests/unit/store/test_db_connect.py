"""rb_store.db.make_engine: a PostgreSQL connection that cannot open gives up after
CONNECT_TIMEOUT instead of the kernel's TCP timeout; a connect_timeout in the URL wins."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Iterator

import pytest
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
    monkeypatch.setattr(db, "CONNECT_TIMEOUT", 1)
    engine = db.make_engine(f"postgresql+psycopg://rb@127.0.0.1:{silent_server}/rb")
    outcome: queue.Queue[BaseException | None] = queue.Queue()

    def connect() -> None:
        try:
            with engine.connect():
                outcome.put(None)
        except BaseException as exc:
            outcome.put(exc)

    # A daemon thread: without the timeout the connect never returns, and the test fails below.
    threading.Thread(target=connect, daemon=True).start()
    try:
        raised = outcome.get(timeout=5)
    except queue.Empty:
        pytest.fail("the connection was still opening after 5 s")
    assert isinstance(raised, OperationalError), raised
    engine.dispose()


def test_the_urls_own_connect_timeout_is_kept() -> None:
    engine = db.make_engine("postgresql+psycopg://rb@127.0.0.1:5/rb?connect_timeout=3")
    _, params = engine.dialect.create_connect_args(engine.url)
    assert str(params["connect_timeout"]) == "3"
